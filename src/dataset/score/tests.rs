//! Every value below is worked out by hand in its comment.

use super::*;

fn s(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn names_parse_and_say_which_way_is_better() {
    let cases = [
        ("accuracy", ScoreType::Accuracy, true),
        ("roc_auc", ScoreType::RocAuc, true),
        ("ROC-AUC", ScoreType::RocAuc, true),
        ("log_loss", ScoreType::LogLoss, false),
        ("f1", ScoreType::F1, true),
        ("rmse", ScoreType::Rmse, false),
        (" mae ", ScoreType::Mae, false),
        ("r2", ScoreType::R2, true),
    ];
    for (name, kind, higher) in cases {
        assert_eq!(ScoreType::parse(name), Ok(kind), "{name}");
        assert_eq!(kind.higher_is_better(), higher, "{name}");
    }
    let err = ScoreType::parse("auc").unwrap_err();
    assert!(err.contains("unknown score type \"auc\""), "{err}");
    assert!(
        err.contains("accuracy, roc_auc, log_loss, f1, rmse, mae, r2"),
        "{err}"
    );
    for kind in ScoreType::ALL {
        assert_eq!(ScoreType::parse(kind.name()), Ok(kind));
    }
}

#[test]
fn classification_by_hand() {
    // 3 of 4 right.
    assert!(close(
        accuracy(&s(&["a", "b", "a", "c"]), &s(&["a", "b", "c", "c"])),
        0.75
    ));
    // Binary, positive "1": tp 2, fp 0, fn 1 → 2·2 / (2·2 + 0 + 1) = 0.8.
    assert!(close(
        f1(
            &s(&["0", "1", "1", "0", "1"]),
            &s(&["0", "1", "0", "0", "1"])
        ),
        0.8
    ));
    // Macro over a, b, c: a 2/3 (tp 1, fn 1), b 1/2 (tp 1, fp 2), c 0 → 7/18.
    assert!(close(
        f1(&s(&["a", "a", "b", "c"]), &s(&["a", "b", "b", "b"])),
        7.0 / 18.0
    ));
    // sklearn's documented example: 3 of 4 positive/negative pairs ordered right.
    let proba: Vec<Vec<f64>> = [0.1, 0.4, 0.35, 0.8]
        .iter()
        .map(|p| vec![1.0 - p, *p])
        .collect();
    assert!(close(roc_auc(&[0, 0, 1, 1], &proba, 2).unwrap(), 0.75));
    // A tie between a positive and a negative counts one half.
    assert!(close(
        roc_auc(&[0, 1], &[vec![0.5, 0.5], vec![0.5, 0.5]], 2).unwrap(),
        0.5
    ));
    // One-vs-rest: class 0 3/4, class 1 (0.3 vs 0.2, 0.4, 0.3) 1.5/3, class 2 1 → 0.75.
    let proba = vec![
        vec![0.6, 0.2, 0.2],
        vec![0.3, 0.4, 0.3],
        vec![0.5, 0.3, 0.2],
        vec![0.2, 0.3, 0.5],
    ];
    assert!(close(roc_auc(&[0, 0, 1, 2], &proba, 3).unwrap(), 0.75));
    assert!(roc_auc(&[1, 1], &[vec![0.2, 0.8], vec![0.3, 0.7]], 2).is_err());
    // −(ln 0.9 + ln 0.8) / 2.
    let ll = log_loss(&[0, 1], &[vec![0.9, 0.1], vec![0.2, 0.8]]);
    assert!(close(ll, -(0.9f64.ln() + 0.8f64.ln()) / 2.0));
    // A probability of 0 for the truth is clipped to 1e-15: −ln 1e-15 = 34.538776394910684.
    assert!(close(log_loss(&[0], &[vec![0.0, 1.0]]), 34.538776394910684));
    // Rows that do not sum to 1 are renormalised: 2/(2+2) → ln 2.
    assert!(close(
        log_loss(&[0], &[vec![2.0, 2.0]]),
        std::f64::consts::LN_2
    ));
}

#[test]
fn regression_by_hand() {
    let t = [1.0, 2.0, 3.0];
    let p = [1.0, 2.0, 5.0];
    assert!(close(rmse(&t, &p), (4.0f64 / 3.0).sqrt()));
    assert!(close(mae(&t, &p), 2.0 / 3.0));
    // SS_tot = 2, SS_res = 4 → 1 − 2 = −1.
    assert!(close(r2(&t, &p), -1.0));
    assert_eq!(r2(&[2.0, 2.0], &[2.0, 2.0]), 1.0);
    assert_eq!(r2(&[2.0, 2.0], &[2.0, 3.0]), 0.0);
}

#[test]
fn compute_takes_text_and_derives_labels_from_probabilities() {
    let inputs = Inputs {
        y_true: s(&["b", "a", "b"]),
        y_proba: Some(vec![vec![0.3, 0.7], vec![0.6, 0.4], vec![0.8, 0.2]]),
        ..Inputs::default()
    };
    // classes default to [a, b]; argmax labels b, a, a → 2 of 3.
    assert!(close(
        compute(ScoreType::Accuracy, &inputs).unwrap(),
        2.0 / 3.0
    ));
    // positives (b) 0.7, 0.2 vs negative 0.4 → 1 of 2 pairs.
    assert!(close(compute(ScoreType::RocAuc, &inputs).unwrap(), 0.5));
    let reg = Inputs {
        y_true: s(&["1", "2", "3"]),
        y_pred: Some(s(&["1", "2", "5"])),
        ..Inputs::default()
    };
    assert!(close(compute(ScoreType::Mae, &reg).unwrap(), 2.0 / 3.0));
}

#[test]
fn compute_refuses_what_it_cannot_score() {
    let base = Inputs {
        y_true: s(&["a", "b"]),
        ..Inputs::default()
    };
    let cases: Vec<(ScoreType, Inputs, &str)> = vec![
        (ScoreType::Accuracy, Inputs::default(), "y_true is empty"),
        (ScoreType::Accuracy, base.clone(), "needs y_pred or y_proba"),
        (ScoreType::LogLoss, base.clone(), "needs y_proba"),
        (
            ScoreType::Accuracy,
            Inputs {
                y_pred: Some(s(&["a"])),
                ..base.clone()
            },
            "y_true has 2 rows but y_pred has 1",
        ),
        (
            ScoreType::RocAuc,
            Inputs {
                y_proba: Some(vec![vec![1.0], vec![0.5]]),
                ..base.clone()
            },
            "y_proba[0] has 1 columns but there are 2 classes",
        ),
        (
            ScoreType::LogLoss,
            Inputs {
                y_proba: Some(vec![vec![0.5, 0.5], vec![0.5, 0.5]]),
                classes: Some(s(&["a", "c"])),
                ..base.clone()
            },
            "the true label \"b\" is not one of the classes",
        ),
        (
            ScoreType::Rmse,
            Inputs {
                y_pred: Some(s(&["1", "2"])),
                ..base.clone()
            },
            "y_true[0] = \"a\" is not a number",
        ),
    ];
    for (kind, inputs, want) in cases {
        let err = compute(kind, &inputs).unwrap_err();
        assert!(err.contains(want), "{kind:?}: {err:?} lacks {want:?}");
    }
}

/// Macro F1 over as many labels as rows, the shape a hostile `POST /scores` sends: one pass
/// (a search per label made this 10^10 compares, minutes of CPU), and the same value as the
/// per-label definition on a smaller case.
#[test]
fn f1_over_a_label_per_row_is_one_pass_and_agrees_with_the_definition() {
    let n = 100_000;
    let truth: Vec<String> = (0..n).map(|i| format!("l{i}")).collect();
    let mut pred = truth.clone();
    pred.rotate_left(1); // every row wrong: each label once true, once predicted
    let started = std::time::Instant::now();
    assert!(close(f1(&truth, &truth), 1.0));
    assert!(close(f1(&truth, &pred), 0.0));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // By the definition: per label, over the labels of both lists, the unweighted mean.
    let by_definition = |t: &[String], p: &[String]| {
        let mut labels: Vec<&String> = t.iter().chain(p).collect();
        labels.sort();
        labels.dedup();
        let per = |l: &String| {
            let tp = t.iter().zip(p).filter(|(a, b)| *a == l && *b == l).count();
            let fp = t.iter().zip(p).filter(|(a, b)| *a != l && *b == l).count();
            let fn_ = t.iter().zip(p).filter(|(a, b)| *a == l && *b != l).count();
            if tp == 0 {
                0.0
            } else {
                2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
            }
        };
        if labels.len() <= 2 {
            per(labels[labels.len() - 1])
        } else {
            labels.iter().map(|l| per(l)).sum::<f64>() / labels.len() as f64
        }
    };
    let mut x = 7u64;
    let mut next = |k: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        format!("c{}", (x >> 33) % k)
    };
    for k in [2, 3, 7, 40] {
        let t: Vec<String> = (0..500).map(|_| next(k)).collect();
        let p: Vec<String> = (0..500).map(|_| next(k)).collect();
        assert!(close(f1(&t, &p), by_definition(&t, &p)), "{k} labels");
    }
}
