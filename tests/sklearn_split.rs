//! `dataset::sklearn_split` against scikit-learn itself, in the fold image (which has numpy and
//! scikit-learn): `train_test_split` rows must be identical, because databoard recomputes the
//! split locally and aligns predictions with it. Fails loudly without Docker.

use datarun::dataset::sklearn_split::{permutation, train_test_split};
use std::process::Command;

const CASES: [(usize, f64, u64); 8] = [
    (150, 0.2, 42),
    (150, 0.2, 57),
    (150, 0.33, 0),
    (10, 0.25, 1),
    (1000, 0.1, 123_456),
    (7, 0.5, 4_294_967_295),
    (2, 0.5, 3),
    (5000, 0.37, 2_147_483_648),
];

#[test]
fn train_test_split_matches_sklearn() {
    let cases: Vec<String> = CASES
        .iter()
        .map(|(n, t, s)| format!("({n}, {t:?}, {s})"))
        .collect();
    let script = format!(
        "import json, numpy as np\n\
         from sklearn.model_selection import train_test_split\n\
         out = [[np.random.RandomState(42).permutation(10).tolist()]]\n\
         for n, t, s in [{}]:\n\
         \x20   tr, te = train_test_split(np.arange(n), test_size=t, random_state=s)\n\
         \x20   out.append([tr.tolist(), te.tolist()])\n\
         print(json.dumps(out))\n",
        cases.join(", ")
    );
    let out = Command::new("docker")
        .args(["run", "--rm", "datarun/fold-python:0.1", "python3", "-c"])
        .arg(&script)
        .output()
        .expect("this test needs Docker and the datarun/fold-python:0.1 image");
    assert!(
        out.status.success(),
        "python in the fold image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Vec<Vec<usize>>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got[0][0], permutation(10, 42));
    for (i, (n, t, s)) in CASES.iter().enumerate() {
        let (train, test) = train_test_split(*n, *t, *s).unwrap();
        assert_eq!(
            got[i + 1][1],
            test,
            "test rows of n={n} test_size={t} seed={s}"
        );
        assert_eq!(
            got[i + 1][0],
            train,
            "train rows of n={n} test_size={t} seed={s}"
        );
    }
    eprintln!("{} cases identical to scikit-learn", CASES.len());
}
