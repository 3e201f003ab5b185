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
    // Raw values at every edge of the input stage (the clamp at 2^23, i32's ends, the byte
    // table's range) through whatever loop the blob selects (byte table, identity, fixed
    // point, per feature): a shared map must give exactly docs/quantization.md's formula.
    const EDGES: [i32; 12] = [
        i32::MIN,
        -(1 << 23) - 1,
        -(1 << 23),
        -129,
        -1,
        0,
        1,
        127,
        255,
        256,
        (1 << 23) - 1,
        i32::MAX,
    ];
    let raw: Vec<i32> = (0..model.n_inputs()).map(|i| EDGES[i % EDGES.len()]).collect();
    model
        .quantize_input(&raw, &mut qin)
        .expect("quantize_input must succeed with exact buffers");
    if let Some((mu, m, t)) = model.shared_input_map() {
        use kiln_runtime::fixed::{clamp_raw, rq, sat8};
        let zp = i64::from(model.input_zero_point());
        for (&x, &q) in raw.iter().zip(&qin) {
            let v = 256 * i64::from(clamp_raw(x)) - i64::from(mu);
            assert_eq!(q, sat8(zp + rq(v, m, t)), "raw {x} through {:?}", model.input_stage());
        }
    }
    for i in 0..model.n_layers() {
        assert!(model.layer(i).is_some());
    }
    assert!(model.layer(model.n_layers()).is_none());
}
