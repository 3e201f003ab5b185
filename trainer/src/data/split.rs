//! Seeded train/test (or train/validation) splits.

use crate::rng::Rng;

use super::error::DataError;
use super::{Dataset, Targets};

/// Checks that a split fraction lies strictly between 0 and 1.
pub(crate) fn check_fraction(fraction: f64) -> Result<(), DataError> {
    if fraction > 0.0 && fraction < 1.0 {
        Ok(())
    } else {
        Err(DataError::InvalidSplitFraction { fraction })
    }
}

/// Splits `dataset` into a first part and a second part holding about
/// `fraction_second` of the samples (the test or validation part).
///
/// * Classes: stratified. Each class with at least 2 samples puts
///   `fraction_second` of them, rounded, into the second part, but never all
///   and never none; a class with a single sample stays in the first part. The
///   per-class counts are rounded by largest remainder so that the second part
///   has `round(n * fraction_second)` samples in total whenever the per-class
///   minimums allow it (1797 digits at 0.25 give 1348 / 449).
/// * Regression: plain random; the second part gets `round(n * fraction_second)`
///   samples, clamped to 1..=n-1.
///
/// Which samples go where is decided by an [`Rng`] seeded with `seed`, so the
/// split is deterministic. Both parts keep the samples in their ORIGINAL ORDER
/// (sorted by index in `dataset`); shuffling is the trainer's business.
///
/// Errors: a fraction outside (0, 1), or a split that leaves a part empty.
pub fn split(
    dataset: &Dataset,
    fraction_second: f64,
    seed: u64,
) -> Result<(Dataset, Dataset), DataError> {
    let (first, second) = split_indices(dataset, fraction_second, seed)?;
    Ok((dataset.subset(&first), dataset.subset(&second)))
}

/// The sorted row indices of both parts; see [`split`].
pub(crate) fn split_indices(
    dataset: &Dataset,
    fraction_second: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    check_fraction(fraction_second)?;
    let n = dataset.n_samples();
    let mut rng = Rng::new(seed);
    let mut in_second = vec![false; n];
    match &dataset.targets {
        Targets::Regression { .. } => {
            if n >= 2 {
                let count = ((n as f64 * fraction_second).round() as usize).clamp(1, n - 1);
                let mut order: Vec<usize> = (0..n).collect();
                rng.shuffle(&mut order);
                for &idx in &order[..count] {
                    in_second[idx] = true;
                }
            }
        }
        Targets::Classes { labels, .. } => {
            let n_groups = labels
                .iter()
                .copied()
                .max()
                .map_or(0, |max| max as usize + 1);
            let mut groups: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
            for (idx, &label) in labels.iter().enumerate() {
                groups[label as usize].push(idx);
            }
            let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
            let counts = stratified_counts(&sizes, fraction_second);
            for (group, count) in groups.iter_mut().zip(counts) {
                rng.shuffle(group);
                for &idx in &group[..count] {
                    in_second[idx] = true;
                }
            }
        }
    }
    let (second, first): (Vec<usize>, Vec<usize>) = (0..n).partition(|&idx| in_second[idx]);
    if first.is_empty() || second.is_empty() {
        return Err(DataError::EmptySplit {
            n_samples: n,
            fraction: fraction_second,
            part: if first.is_empty() { "first" } else { "second" },
        });
    }
    Ok((first, second))
}

/// How many samples of each class go to the second part: largest-remainder
/// rounding towards a total of round(n * fraction), with 1..=size-1 per class
/// of size >= 2 and 0 for classes of size 0 or 1.
fn stratified_counts(sizes: &[usize], fraction: f64) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let target = (total as f64 * fraction).round() as usize;
    let mut counts: Vec<usize> = sizes
        .iter()
        .map(|&size| {
            if size < 2 {
                0
            } else {
                ((size as f64 * fraction).floor() as usize).clamp(1, size - 1)
            }
        })
        .collect();
    // Classes ordered by descending fractional remainder, then by class.
    let mut order: Vec<usize> = (0..sizes.len())
        .filter(|&class| sizes[class] >= 2)
        .collect();
    let remainder = |class: usize| {
        let exact = sizes[class] as f64 * fraction;
        exact - exact.floor()
    };
    order.sort_by(|&a, &b| remainder(b).total_cmp(&remainder(a)).then(a.cmp(&b)));
    let mut assigned: usize = counts.iter().sum();
    while assigned < target {
        let mut progressed = false;
        for &class in &order {
            if assigned == target {
                break;
            }
            if counts[class] + 1 < sizes[class] {
                counts[class] += 1;
                assigned += 1;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classification set whose single feature is the row index.
    fn classes(sizes: &[usize]) -> Dataset {
        let mut labels = Vec::new();
        // Interleave the classes so that the original order is not class-sorted.
        let max = sizes.iter().copied().max().unwrap_or(0);
        for round in 0..max {
            for (class, &size) in sizes.iter().enumerate() {
                if round < size {
                    labels.push(class as u32);
                }
            }
        }
        let features = (0..labels.len()).map(|i| i as f32).collect();
        Dataset {
            features,
            n_features: 1,
            targets: Targets::Classes {
                labels,
                n_classes: sizes.len(),
            },
        }
    }

    fn ids(dataset: &Dataset) -> Vec<usize> {
        dataset.features.iter().map(|&x| x as usize).collect()
    }

    fn class_count(dataset: &Dataset, class: u32) -> usize {
        match &dataset.targets {
            Targets::Classes { labels, .. } => labels.iter().filter(|&&l| l == class).count(),
            Targets::Regression { .. } => unreachable!(),
        }
    }

    #[test]
    fn stratification_keeps_class_proportions() {
        let sizes = [100, 50, 10, 3, 2, 1, 0, 37];
        let data = classes(&sizes);
        let n = data.n_samples();
        let (first, second) = split(&data, 0.3, 11).unwrap();
        assert_eq!(second.n_samples(), (n as f64 * 0.3).round() as usize);
        assert_eq!(first.n_samples() + second.n_samples(), n);
        for (class, &size) in sizes.iter().enumerate() {
            let in_second = class_count(&second, class as u32);
            let in_first = class_count(&first, class as u32);
            assert_eq!(in_first + in_second, size);
            match size {
                0 => {}
                1 => assert_eq!(
                    (in_first, in_second),
                    (1, 0),
                    "a singleton class stays in the first part"
                ),
                _ => {
                    assert!(
                        in_first >= 1 && in_second >= 1,
                        "class {class}: {in_first}/{in_second}"
                    );
                    let exact = size as f64 * 0.3;
                    assert!(
                        (in_second as f64 - exact).abs() <= 1.0,
                        "class {class}: {in_second} vs {exact}"
                    );
                }
            }
        }
        // Exact counts for the big classes: 30 of 100, 15 of 50, 3 of 10.
        assert_eq!(class_count(&second, 0), 30);
        assert_eq!(class_count(&second, 1), 15);
        assert_eq!(class_count(&second, 2), 3);

        // A small class whose share rounds to 0 still gets one sample in the
        // second part, even beyond round(n * fraction) = 10.
        let (first, second) = split(&classes(&[100, 2]), 0.1, 0).unwrap();
        assert_eq!((class_count(&second, 0), class_count(&second, 1)), (10, 1));
        assert_eq!((first.n_samples(), second.n_samples()), (91, 11));
    }

    #[test]
    fn split_is_a_sorted_partition_and_deterministic() {
        let data = classes(&[40, 30, 30]);
        let (a1, a2) = split(&data, 0.25, 5).unwrap();
        let (b1, b2) = split(&data, 0.25, 5).unwrap();
        assert_eq!((&a1, &a2), (&b1, &b2));
        let (c1, _) = split(&data, 0.25, 6).unwrap();
        assert_ne!(ids(&a1), ids(&c1), "another seed gives another split");
        let (first, second) = (ids(&a1), ids(&a2));
        assert!(
            first.windows(2).all(|w| w[0] < w[1]),
            "first part keeps the original order"
        );
        assert!(
            second.windows(2).all(|w| w[0] < w[1]),
            "second part keeps the original order"
        );
        let mut all: Vec<usize> = first.iter().chain(&second).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Labels travel with their rows.
        let Targets::Classes { labels, n_classes } = &a2.targets else {
            panic!()
        };
        assert_eq!(*n_classes, 3);
        let Targets::Classes { labels: orig, .. } = &data.targets else {
            panic!()
        };
        for (row, &id) in second.iter().enumerate() {
            assert_eq!(labels[row], orig[id]);
        }
    }

    #[test]
    fn regression_split_is_plain_random() {
        let n = 50;
        let data = Dataset {
            features: (0..n).map(|i| i as f32).collect(),
            n_features: 1,
            targets: Targets::single((0..n).map(|i| i as f32 * 0.5).collect()),
        };
        let (first, second) = split(&data, 0.2, 1).unwrap();
        assert_eq!((first.n_samples(), second.n_samples()), (40, 10));
        let Targets::Regression { values, .. } = &second.targets else {
            panic!()
        };
        for (row, &id) in ids(&second).iter().enumerate() {
            assert_eq!(values[row], id as f32 * 0.5);
        }
        let (other, _) = split(&data, 0.2, 2).unwrap();
        assert_ne!(ids(&first), ids(&other));
        // Tiny fractions still leave one sample in each part.
        let (first, second) = split(&data, 0.001, 1).unwrap();
        assert_eq!((first.n_samples(), second.n_samples()), (49, 1));
    }

    #[test]
    fn invalid_fractions_and_empty_parts() {
        let data = classes(&[5, 5]);
        for fraction in [0.0, 1.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            let err = split(&data, fraction, 0).unwrap_err();
            assert!(
                matches!(err, DataError::InvalidSplitFraction { .. }),
                "{fraction}: {err:?}"
            );
            assert!(err.to_string().contains("between 0 and 1"));
        }
        // Only singleton classes: nothing can go to the second part.
        let err = split(&classes(&[1, 1, 1]), 0.5, 0).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::EmptySplit {
                    part: "second",
                    n_samples: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        let one = Dataset {
            features: vec![1.0],
            n_features: 1,
            targets: Targets::single(vec![0.0]),
        };
        assert!(matches!(
            split(&one, 0.5, 0),
            Err(DataError::EmptySplit { .. })
        ));
    }
}
