//! Any bytes as a CSV file through `data::load`, with the reading options chosen by the first
//! two bytes: the label column (last, an index, a list of target columns, or the autoencoder's
//! features), an anomaly column, classes or regression. A regression table then goes through
//! the host's raw-input conversion (`quant::host::raw_inputs`, fraction bits from the third
//! byte) and the regression and anomaly metrics. Errors are fine; panics are not.
#![no_main]

use kiln_trainer::data::{load, DataOptions, DataSpec, LabelColumn, TargetKind, Targets};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (options, frac_bits, bytes) = match data {
        [layout, anomaly, bits, rest @ ..] => {
            let label_column = match layout % 4 {
                0 => LabelColumn::Last,
                1 => LabelColumn::Index(usize::from(layout / 4)),
                2 => LabelColumn::Columns(
                    (0..usize::from(layout / 64) + 1)
                        .map(|k| usize::from(layout / 4 % 16) + k)
                        .collect(),
                ),
                _ => LabelColumn::Inputs,
            };
            let regression = anomaly & 1 == 1 || layout % 4 >= 2;
            let options = DataOptions {
                label_column,
                anomaly_column: (anomaly & 2 == 2).then_some(usize::from(anomaly / 4 % 16)),
                target: if regression {
                    TargetKind::Regression
                } else {
                    TargetKind::Classes { n_classes: None }
                },
                ..DataOptions::default()
            };
            (options, bits % 26, rest)
        }
        _ => (DataOptions::default(), 0, data),
    };
    let path = std::env::temp_dir().join(format!("kiln-fuzz-csv-{}.csv", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let Ok(split) = load(&DataSpec::Csv(path), &options) else {
        return;
    };
    let test = &split.test;
    let _ = kiln_trainer::quant::host::raw_inputs(test, "fuzz", frac_bits);
    if let Targets::Regression {
        values,
        n_outputs,
        anomaly,
    } = &test.targets
    {
        assert_eq!(values.len(), test.n_samples() * n_outputs);
        // The targets themselves as the predictions, and shifted by one.
        let shifted: Vec<f32> = values.iter().map(|v| v + 1.0).collect();
        for predictions in [values, &shifted] {
            let metrics = kiln_trainer::metrics::regression_metrics(
                predictions,
                values,
                *n_outputs,
                anomaly.as_deref(),
            );
            assert_eq!(metrics.per_output.len(), *n_outputs);
        }
    }
});
