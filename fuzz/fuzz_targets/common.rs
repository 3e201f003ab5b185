// Shared by the blob targets: load, then run the model with zeroed inputs and exact buffers.

pub fn exercise(bytes: &[u8]) {
    let Ok(model) = kiln_runtime::Model::from_bytes(bytes) else {
        return;
    };
    // A loaded model's declared sizes are backed by the blob's own bytes, so these
    // allocations are bounded by the input size.
    let raw = vec![0i32; model.n_inputs()];
    let mut scratch = vec![0i8; model.scratch_len()];
    let mut logits = vec![0i8; model.n_outputs()];
    let class = model
        .run(&raw, &mut scratch, &mut logits)
        .expect("run must succeed on a loaded model with exact buffers");
    assert!(class < model.n_outputs());
    let q = vec![0i8; model.n_inputs()];
    let class = model
        .run_quantized(&q, &mut scratch, &mut logits)
        .expect("run_quantized must succeed on a loaded model with exact buffers");
    assert!(class < model.n_outputs());
    let mut qin = vec![0i8; model.n_inputs()];
    model
        .quantize_input(&raw, &mut qin)
        .expect("quantize_input must succeed with exact buffers");
    for i in 0..model.n_layers() {
        assert!(model.layer(i).is_some());
    }
    assert!(model.layer(model.n_layers()).is_none());
}
