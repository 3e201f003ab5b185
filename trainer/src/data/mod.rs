//! Datasets: IDX, CSV and the bundled UCI digits.
