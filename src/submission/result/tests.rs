use super::*;
use crate::submission::npy;

const LOG: &str = "datarun-fold: trained in 0.010s\n\
datarun-fold: Classifier.fit failed:\n\
Traceback (most recent call last):\n\
  File \"/usr/local/bin/datarun-fold\", line 52, in submission_call\n\
    return fn(*args)\n\
  File \"/datarun/input/submission/classifier.py\", line 6, in fit\n\
    raise ValueError(\"this submission is broken on purpose\")\n\
ValueError: this submission is broken on purpose\n\
\n";

fn view<'a>(state: FoldState, outcome: Option<&'a Outcome>, phases: &'a [String]) -> RunView<'a> {
    RunView {
        state,
        reason: None,
        hold_code: None,
        outcome,
        phases,
        has_test_table: true,
        log: LOG,
    }
}

fn phases(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

#[test]
fn the_last_traceback_is_extracted() {
    let tb = traceback(LOG).unwrap();
    assert!(tb.starts_with("Traceback (most recent call last):"));
    assert!(
        tb.ends_with("ValueError: this submission is broken on purpose"),
        "{tb}"
    );
    assert_eq!(tb.lines().count(), 6);
    let chained = format!("{LOG}Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'a'\nmore of the message\n\nafter");
    assert_eq!(
        traceback(&chained).unwrap(),
        "Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'a'\nmore of the message"
    );
    assert_eq!(traceback("no trace here"), None);
}

#[test]
fn states_map_to_phases() {
    let all = phases(&["trained", "validated", "tested"]);
    let ok = Outcome::Success;
    assert_eq!(
        verdict(&view(FoldState::Done, Some(&ok), &all)).phase,
        Phase::Tested
    );
    let mut v = view(FoldState::Done, Some(&ok), &all);
    v.has_test_table = false;
    assert_eq!(verdict(&v).phase, Phase::Validated);
    let short = phases(&["trained"]);
    let r = verdict(&view(FoldState::Done, Some(&ok), &short));
    assert_eq!(r.phase, Phase::Error);
    assert!(r.reason.unwrap().contains("[\"trained\"]"));
    for s in [FoldState::Idle, FoldState::Assigned, FoldState::Running] {
        assert_eq!(verdict(&view(s, None, &[])).phase, Phase::Todo);
    }

    let exit1 = Outcome::ExitCode { code: 1 };
    let r = verdict(&view(FoldState::Failed, Some(&exit1), &short));
    assert_eq!(r.phase, Phase::Error);
    assert_eq!(
        r.reason.as_deref(),
        Some("the submission failed: ValueError: this submission is broken on purpose")
    );
    assert!(r.traceback.unwrap().contains("classifier.py\", line 6"));

    let exit2 = Outcome::ExitCode { code: 2 };
    let mut v = view(FoldState::Failed, Some(&exit2), &[]);
    v.log = "datarun-fold: workflow element 'classifier' needs classifier.py, not found\n";
    assert_eq!(
        verdict(&v).reason.as_deref(),
        Some("bad fold inputs: workflow element 'classifier' needs classifier.py, not found")
    );

    let hard = Outcome::TimedOutHard;
    let r = verdict(&view(FoldState::Failed, Some(&hard), &[]));
    assert_eq!(r.reason.as_deref(), Some("timed out (hard limit, SIGKILL)"));

    let mut v = view(FoldState::Held, None, &[]);
    v.hold_code = Some(HoldCode::OutOfMemory);
    v.reason = Some("went over 256M");
    assert_eq!(
        verdict(&v).reason.as_deref(),
        Some("held (out_of_memory): went over 256M")
    );
    let mut v = view(FoldState::Removed, None, &[]);
    v.reason = Some("removed by alice");
    let r = verdict(&v);
    assert_eq!(
        (r.phase, r.reason.as_deref()),
        (Phase::Error, Some("cancelled: removed by alice"))
    );
}

fn truth(xs: &[&str]) -> Vec<Option<String>> {
    xs.iter().map(|x| Some(x.to_string())).collect()
}

#[test]
fn scores_of_probabilities_and_values() {
    let proba = npy::parse(&npy::write_f64(&[3, 2], &[0.9, 0.1, 0.2, 0.8, 0.6, 0.4])).unwrap();
    let labels = vec!["no".to_string(), "yes".to_string()];
    let kinds = [ScoreType::Accuracy, ScoreType::RocAuc, ScoreType::Rmse];
    // Rows 1 and 2: predicted yes, no; truth yes, yes.
    let (ok, errors) = scores(
        &kinds,
        &proba,
        Some(&[1, 2]),
        &truth(&["yes", "yes"]),
        Some(&labels),
    );
    assert_eq!(ok["accuracy"], 0.5);
    assert!(errors["roc_auc"].contains("undefined"));
    assert!(errors["rmse"].contains("one value per row"));
    let (ok, _) = scores(
        &kinds[..2],
        &proba,
        None,
        &truth(&["no", "yes", "no"]),
        Some(&labels),
    );
    assert_eq!((ok["accuracy"], ok["roc_auc"]), (1.0, 1.0));

    let values = npy::parse(&npy::write_f64(&[2], &[1.0, 4.0])).unwrap();
    let kinds = [ScoreType::Rmse, ScoreType::Mae, ScoreType::Accuracy];
    let (ok, errors) = scores(&kinds, &values, None, &truth(&["2", "2"]), None);
    assert_eq!(ok["rmse"], (2.5f64).sqrt());
    assert_eq!(ok["mae"], 1.5);
    assert!(errors["accuracy"].contains("2-D"));
    let (_, errors) = scores(&kinds[..1], &values, None, &truth(&["2"]), None);
    assert!(errors["rmse"].contains("2 predictions for 1 rows"));
}

#[test]
fn labels_read_as_the_csv_reads_them() {
    let v = serde_json::json!(["a", 1, 2.5, true]);
    assert_eq!(label_texts(&v).unwrap(), ["a", "1", "2.5", "True"]);
}
