//! The language on its own: lexing and parsing (good and bad inputs, with positions), and
//! evaluation (each operator, types, undefined, errors, precedence).

use super::*;

/// A runner with 8 cpus, 16G, 1 GPU, labels ["fast-disk", "ssd"], arch x86_64, a custom
/// attribute `generation = 3`, and a fold of owner alice with priority 5.
struct Test {
    labels: Vec<String>,
}

impl Scope for Test {
    fn runner(&self, attr: &RunnerAttr) -> Value<'_> {
        match attr {
            RunnerAttr::Name => Value::Str("gpu-1"),
            RunnerAttr::Cpus => Value::Int(8),
            RunnerAttr::Memory => Value::Int(16 << 30),
            RunnerAttr::Gpus => Value::Int(1),
            RunnerAttr::Arch => Value::Str("x86_64"),
            RunnerAttr::Labels => Value::List(&self.labels),
            RunnerAttr::Custom(n) if n == "generation" => Value::Int(3),
            RunnerAttr::Custom(n) if n == "ratio" => Value::Float(0.5),
            _ => Value::Undefined,
        }
    }
    fn fold(&self, attr: FoldAttr) -> Value<'_> {
        match attr {
            FoldAttr::Owner => Value::Str("alice"),
            FoldAttr::Priority => Value::Int(5),
            FoldAttr::Memory => Value::Int(2 << 30),
            FoldAttr::Image => Value::Undefined,
            _ => Value::Int(0),
        }
    }
}

fn scope() -> Test {
    Test {
        labels: vec!["fast-disk".into(), "ssd".into()],
    }
}

fn eval_text(text: &str) -> Value<'static> {
    let e = Expr::parse(text, Home::Runner).unwrap_or_else(|e| panic!("{text}: {e}"));
    let s = scope();
    // Own the result: strings and lists are only compared, never kept.
    match e.eval(&s) {
        Value::Str(_) => Value::Str("<string>"),
        Value::List(_) => Value::List(&[]),
        Value::Error(m) => Value::Error(m),
        Value::Undefined => Value::Undefined,
        Value::Bool(b) => Value::Bool(b),
        Value::Int(i) => Value::Int(i),
        Value::Float(x) => Value::Float(x),
    }
}

#[test]
fn syntax_errors_are_located() {
    // (text, column, message)
    let table: &[(&str, usize, &str)] = &[
        ("", 1, "empty expression"),
        ("   ", 1, "empty expression"),
        ("gpus >= 1 &&", 13, "expected an expression after '&&'"),
        ("gpus >= 1 && )", 14, "expected an expression after '&&', found ')'"),
        ("gpus >=", 8, "expected an expression after '>='"),
        ("gpus = 1", 6, "'=' is not an operator; did you mean '=='?"),
        ("gpus >= 1 & x", 11, "'&' is not an operator; did you mean '&&'?"),
        ("a | b", 3, "'|' is not an operator; did you mean '||'?"),
        ("(gpus >= 1", 11, "expected ')' to close the '(' at column 1, found the end"),
        ("gpus >= 1)", 10, "')' without a matching '('"),
        ("gpus 1", 6, "unexpected a number after a complete expression; join conditions with && or ||"),
        ("\"abc", 1, "this string has no closing \""),
        ("'abc", 1, "this string has no closing '"),
        ("\"a\\qb\"", 3, "unknown escape '\\q' (use \\\", \\', \\\\, \\n or \\t)"),
        ("memory > 4X", 10, "bad size \"4X\": unknown unit \"X\" (use K, M, G or T)"),
        ("1 < 2 < 3", 7, "comparisons do not chain: write 'a < b && b < c'"),
        ("gpus # 1", 6, "unexpected character '#'"),
        ("runner.", 8, "expected an attribute name after 'runner.', found the end"),
        ("runner + 1", 7, "expected '.' and an attribute name after 'runner' (e.g. runner.name)"),
        ("fold.colour == 1", 1, "folds have no attribute 'colour' (they have: owner, queue, priority, cpus, memory, gpus, image)"),
        ("99999999999999999999", 1, "99999999999999999999 is too large for an integer"),
        ("é == 1", 1, "unexpected character 'é'"),
        ("\"é\" == )", 8, "expected an expression after '==', found ')'"),
    ];
    for &(text, column, message) in table {
        let err = Expr::parse(text, Home::Runner).expect_err(text);
        assert_eq!(
            (err.column, err.message.as_str()),
            (column, message),
            "{text:?}"
        );
        assert_eq!(err.to_string(), format!("column {column}: {message}"));
    }
    // In a runner's requirements bare names are the fold's: unknown ones are errors there.
    let err = Expr::parse("colour == \"red\"", Home::Fold).unwrap_err();
    assert_eq!(err.column, 1);
    assert!(err.message.starts_with("folds have no attribute 'colour'"));
}

#[test]
fn good_inputs_parse_and_resolve_names() {
    // (text, home, fold attributes read)
    let table: &[(&str, Home, u8)] = &[
        (
            "gpus >= 1 && arch == \"x86_64\" && \"fast-disk\" in labels",
            Home::Runner,
            0,
        ),
        ("memory", Home::Runner, 0),
        (
            "owner != \"guest\" || queue == \"L\"",
            Home::Fold,
            FoldAttr::Owner.bit() | FoldAttr::Queue.bit(),
        ),
        (
            "fold.cpus * 2 <= runner.cpus",
            Home::Runner,
            FoldAttr::Cpus.bit(),
        ),
        (
            "runner.memory >= memory * 4",
            Home::Fold,
            FoldAttr::Memory.bit(),
        ),
        ("!(disk == 'ssd') && -generation < -2", Home::Runner, 0),
        ("  .5 < 1.5 && 4G == 4096M && 1.5G > 1G  ", Home::Runner, 0),
        ("x_1 == true || false", Home::Runner, 0),
    ];
    for &(text, home, mask) in table {
        let e = Expr::parse(text, home).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(e.fold_mask(), mask, "{text}");
        assert_eq!(e.text(), text);
    }
}

#[test]
fn operators_types_and_undefined() {
    use Value::*;
    let err = |m: &str| Error(m.to_string());
    let table: &[(&str, Value)] = &[
        // Comparisons, numbers of both kinds, sizes.
        ("gpus >= 1", Bool(true)),
        ("gpus > 1", Bool(false)),
        ("cpus == 8.0", Bool(true)),
        ("cpus != 8", Bool(false)),
        ("cpus <= 7.5", Bool(false)),
        ("cpus < 9", Bool(true)),
        ("memory >= 16G && memory < 16385M", Bool(true)),
        ("ratio * 4 == 2", Bool(true)),
        // Strings: equality, order, membership, substring.
        ("arch == \"x86_64\"", Bool(true)),
        ("arch == 'X86_64'", Bool(false)),
        ("name < \"gpu-2\"", Bool(true)),
        ("\"ssd\" in labels", Bool(true)),
        ("\"nvme\" in labels", Bool(false)),
        ("\"86\" in arch", Bool(true)),
        ("\"a\\\"b\" == 'a\"b'", Bool(true)),
        // Arithmetic and precedence.
        ("1 + 2 * 3 == 7", Bool(true)),
        ("(1 + 2) * 3 == 9", Bool(true)),
        ("7 / 2 == 3", Bool(true)),
        ("7.0 / 2 == 3.5", Bool(true)),
        ("10 - 2 - 3 == 5", Bool(true)),
        ("-gpus == -1", Bool(true)),
        ("1 / 0", err("division by zero")),
        ("1.0 / 0", err("division by zero")),
        ("9223372036854775807 + 1", err("integer overflow")),
        ("true || false && false", Bool(true)),
        ("!false && !(gpus > 1)", Bool(true)),
        // Undefined: a missing attribute.
        ("disk == \"ssd\"", Undefined),
        ("disk + 1 > 2", Undefined),
        ("!disk", Undefined),
        ("\"x\" in disk", Undefined),
        ("disk == \"ssd\" && gpus > 5", Bool(false)),
        ("gpus > 5 && disk == \"ssd\"", Bool(false)),
        ("disk == \"ssd\" && gpus > 0", Undefined),
        ("disk == \"ssd\" || gpus > 0", Bool(true)),
        ("disk == \"ssd\" || gpus > 5", Undefined),
        // Errors: types that do not go together.
        ("memory > \"big\"", err("cannot order an integer and a string")),
        ("arch == 1", err("cannot compare a string with an integer")),
        ("labels == labels", err("cannot compare a list with a list")),
        ("true < false", err("cannot order a boolean and a boolean")),
        ("arch + 1", err("'+' needs numbers, found a string and an integer")),
        ("!gpus", err("'!' needs true or false, found an integer")),
        ("-arch", err("'-' needs a number, found a string")),
        ("gpus && true", err("'&&' needs true or false, found an integer")),
        ("false || arch", err("'||' needs true or false, found a string")),
        ("1 in labels", err("'in' needs a string on the left and a list or a string on the right, found an integer in a list")),
        // Short-circuit: an error on the right does not matter once the left decides.
        ("false && arch == 1", Bool(false)),
        ("true || arch == 1", Bool(true)),
        ("true && arch == 1", err("cannot compare a string with an integer")),
        ("disk == 1 && arch == 1", err("cannot compare a string with an integer")),
        ("arch == 1 && false", err("cannot compare a string with an integer")),
    ];
    for (text, want) in table {
        assert_eq!(&eval_text(text), want, "{text}");
    }
}

#[test]
fn verdicts_ranks_and_why() {
    let s = scope();
    let check = |text: &str| Expr::parse(text, Home::Runner).unwrap();
    // (text, verdict, rank, why: (leaf, detail, error))
    type Case = (
        &'static str,
        Verdict,
        f64,
        Option<(&'static str, &'static str, bool)>,
    );
    let table: &[Case] = &[
        ("gpus >= 1", Verdict::Pass, 1.0, None),
        (
            "gpus >= 2",
            Verdict::Fail,
            0.0,
            Some(("gpus >= 2", "gpus is 1", false)),
        ),
        (
            "arch == \"x86_64\" && memory >= 32G && \"ssd\" in labels",
            Verdict::Fail,
            0.0,
            Some(("memory >= 32G", "memory is 16G", false)),
        ),
        (
            "disk == \"ssd\"",
            Verdict::Fail,
            0.0,
            Some(("disk == \"ssd\"", "disk is undefined", false)),
        ),
        (
            "cpus > 16 || gpus > 4",
            Verdict::Fail,
            0.0,
            Some(("cpus > 16 || gpus > 4", "cpus is 8, gpus is 1", false)),
        ),
        (
            "gpus > 0 && memory > \"big\"",
            Verdict::Error,
            0.0,
            Some((
                "memory > \"big\"",
                "cannot order an integer and a string",
                true,
            )),
        ),
        (
            "memory",
            Verdict::Error,
            (16u64 << 30) as f64,
            Some(("memory", "must be true or false, found an integer", true)),
        ),
        (
            "generation * 0.5",
            Verdict::Error,
            1.5,
            Some((
                "generation * 0.5",
                "must be true or false, found a number",
                true,
            )),
        ),
        (
            "arch",
            Verdict::Error,
            0.0,
            Some(("arch", "must be true or false, found a string", true)),
        ),
        (
            "disk",
            Verdict::Fail,
            0.0,
            Some(("disk", "disk is undefined", false)),
        ),
        (
            "fold.owner == \"bob\"",
            Verdict::Fail,
            0.0,
            Some(("fold.owner == \"bob\"", "fold.owner is \"alice\"", false)),
        ),
    ];
    for &(text, verdict, rank, why) in table {
        let e = check(text);
        assert_eq!(e.verdict(&s), verdict, "{text}");
        assert_eq!(e.rank(&s), rank, "{text}");
        let want = why.map(|(leaf, detail, error)| Why {
            leaf: leaf.into(),
            detail: detail.into(),
            error,
        });
        assert_eq!(e.why(&s), want, "{text}");
    }
}

#[test]
fn attribute_names() {
    assert!(check_attribute_name("disk").is_ok());
    assert!(check_attribute_name("gen_2").is_ok());
    for bad in [
        "",
        "2gen",
        "fast-disk",
        "memory",
        "free_slots",
        "in",
        "runner",
        "a.b",
    ] {
        assert!(check_attribute_name(bad).is_err(), "{bad:?}");
    }
    assert!(check_attribute_name("memory")
        .unwrap_err()
        .contains("may not shadow"));
}
