//! The container spec and small helpers, tested without an engine.

use super::*;

fn plain_request() -> ExecRequest {
    ExecRequest {
        attempt: 17,
        fold: 5,
        runner: "r1".into(),
        image: Some(IMAGE.into()),
        command: vec!["python3".into(), "train.py".into()],
        env: BTreeMap::from([("FOO".into(), "bar".into())]),
        work_dir: "/var/lib/datarun/attempts/17".into(),
        input_dir: "/var/lib/datarun/attempts/17/input".into(),
        output_dir: "/var/lib/datarun/attempts/17/output".into(),
        memory_limit: Some(512 * MIB),
        millicpus: 1500,
        soft_limit: Some(Duration::from_secs(60)),
        hard_limit: Some(Duration::from_secs(90)),
        gpus: vec![],
        log_limit: 64 << 10,
        output_limit: 10 * MIB,
    }
}

#[test]
fn the_container_is_confined_to_its_grant() {
    let req = plain_request();
    let opts = DockerOptions::default();
    let body = spec::container_config(&req, IMAGE, &opts, &["/data".into(), "/tmp".into()]);
    assert_eq!(body.image.as_deref(), Some(IMAGE));
    assert_eq!(body.cmd, Some(req.command.clone()));
    assert_eq!(body.entrypoint, Some(vec![]));
    assert_eq!(body.user.as_deref(), Some("1000:1000"));
    assert_eq!(body.working_dir.as_deref(), Some("/datarun"));
    let labels = body.labels.clone().unwrap();
    assert_eq!(labels[LABEL_ATTEMPT], "17");
    assert_eq!(labels[LABEL_FOLD], "5");
    assert_eq!(labels[LABEL_RUNNER], "r1");
    let env = body.env.clone().unwrap();
    for var in [
        "FOO=bar",
        "DATARUN_INPUT=/datarun/input",
        "DATARUN_OUTPUT=/datarun/output",
        "DATARUN_ATTEMPT=17",
        "DATARUN_CPUS=1.5",
        "OMP_NUM_THREADS=2",
        "HOME=/tmp",
        "NVIDIA_VISIBLE_DEVICES=void",
    ] {
        assert!(env.contains(&var.to_string()), "{var} missing from {env:?}");
    }

    let host = body.host_config.unwrap();
    assert_eq!(host.memory, Some(512 * MIB as i64));
    assert_eq!(host.memory_swap, Some(512 * MIB as i64), "no swap");
    assert_eq!(host.nano_cpus, Some(1_500_000_000));
    assert_eq!(host.pids_limit, Some(256));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_string()])
    );
    assert_eq!(host.init, Some(true));
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.device_requests, None, "no GPU granted, none requested");
    let tmpfs = host.tmpfs.unwrap();
    assert_eq!(tmpfs["/tmp"], "rw,nosuid,nodev,size=67108864,mode=1777");
    assert_eq!(
        tmpfs["/data"], tmpfs["/tmp"],
        "an image VOLUME becomes a tmpfs"
    );
    let mounts = host.mounts.unwrap();
    assert_eq!(mounts.len(), 2);
    let input = &mounts[0];
    assert_eq!(
        input.source.as_deref(),
        Some("/var/lib/datarun/attempts/17/input")
    );
    assert_eq!(input.target.as_deref(), Some("/datarun/input"));
    assert_eq!(input.read_only, Some(true));
    assert_eq!(input.typ, Some(bollard::models::MountType::BIND));
    let output = &mounts[1];
    assert_eq!(
        output.source.as_deref(),
        Some("/var/lib/datarun/attempts/17/output")
    );
    assert_eq!(output.target.as_deref(), Some("/datarun/output"));
    assert_eq!(output.read_only, Some(false));
    assert!(
        host.binds.is_none(),
        "only the attempt's two directories are mounted"
    );
    let log = host.log_config.unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
}

#[test]
fn granted_gpus_become_one_nvidia_device_request() {
    let mut req = plain_request();
    req.gpus = vec!["0".into(), "GPU-3f2a".into()];
    let body = spec::container_config(&req, IMAGE, &DockerOptions::default(), &[]);
    let requests = body.host_config.unwrap().device_requests.unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.driver.as_deref(), Some("nvidia"));
    assert_eq!(request.device_ids, Some(req.gpus.clone()));
    assert_eq!(request.capabilities, Some(vec![vec!["gpu".to_string()]]));
    assert_eq!(request.count, None);
    let env = body.env.unwrap();
    assert!(env.contains(&"NVIDIA_VISIBLE_DEVICES=0,GPU-3f2a".to_string()));
}

#[test]
fn options_and_small_helpers() {
    let mut req = plain_request();
    req.memory_limit = None;
    req.millicpus = 0;
    let opts = DockerOptions {
        allow_network: true,
        ..DockerOptions::default()
    };
    let host = spec::host_config(&req, &opts, &[]);
    assert_eq!(host.network_mode.as_deref(), Some("bridge"));
    assert_eq!(
        (host.memory, host.memory_swap, host.nano_cpus),
        (None, None, None)
    );
    // A fold's variable cannot take over datarun's.
    req.env.insert("HOME".into(), "/root".into());
    assert_eq!(spec::fold_env(&req)["HOME"], "/tmp");
    assert_eq!(crate::agent::exec::format_cpus(250), "0.25");
    assert_eq!(crate::agent::exec::format_cpus(2000), "2");
    assert_eq!(spec::numeric_user("1000:1001"), Some((1000, 1001)));
    assert_eq!(spec::numeric_user("1000"), Some((1000, 1000)));
    assert_eq!(spec::numeric_user("fold"), None);
    assert_eq!(spec::container_name("ns", 42), "datarun-ns-42");
    assert_eq!(
        housekeeping::loaded_names("Loaded image: a/b:c\nLoaded image ID: sha256:ab\n"),
        ["a/b:c", "sha256:ab"]
    );
    assert_eq!(spec::log_file_size(10), 1 << 20);
    assert!(DockerOptions::default().check().is_ok());
    for user in ["0", "root", "0:0", "root:1000", ""] {
        let opts = DockerOptions {
            user: user.into(),
            ..DockerOptions::default()
        };
        assert!(
            opts.check().unwrap_err().contains("never run as root"),
            "{user:?}"
        );
    }
    let opts = DockerOptions {
        pids_limit: 0,
        ..DockerOptions::default()
    };
    assert!(opts.check().unwrap_err().contains("pids_limit"));
}

#[test]
fn log_chunks_lose_their_timestamps_and_catch_up_skips_what_was_seen() {
    let mut log = LogState::new(1000);
    log.push(b"2024-05-01T10:11:12.5Z one\n", None);
    log.push(b"2024-05-01T10:11:12.25Z two\n", None); // the other stream, logged a bit late
    log.push(b"no timestamp\n", None);
    let last = log.last;
    assert_eq!(last, limits::parse_time("2024-05-01T10:11:12.5Z"));
    log.push(b"2024-05-01T10:11:12.1Z one\n", last);
    log.push(b"2024-05-01T10:11:12.5Z one\n", last);
    log.push(b"2024-05-01T10:11:13Z three\n", last);
    assert_eq!(log.tail.take_log(), b"one\ntwo\nno timestamp\nthree\n");
}

#[test]
fn a_warm_container_is_confined_as_a_fold_and_labelled_with_no_attempt() {
    let warm = crate::inventory::WarmSpec {
        image: IMAGE.into(),
        command: vec!["datarun-ramp-fold".into()],
        count: 2,
        memory: 256 * MIB,
    };
    let dir = Path::new("/var/lib/datarun/warm/datarun-ns-warm-1-0");
    let req = crate::agent::docker::warm::warm_request(&warm, dir);
    let opts = DockerOptions::default();
    let body = spec::warm_config(&req, &warm, &opts, &[], dir);
    let cold = spec::container_config(&plain_request(), IMAGE, &opts, &[]);
    assert_eq!(body.cmd, Some(warm.command.clone()));
    assert_eq!(body.user, cold.user);
    assert_eq!(body.network_disabled, Some(true));
    let labels = body.labels.clone().unwrap();
    assert!(!labels.contains_key(LABEL_ATTEMPT));
    assert_eq!(labels[LABEL_WARM], std::process::id().to_string());
    assert_eq!(labels[LABEL_NAMESPACE], "default");
    let env = body.env.clone().unwrap();
    assert!(env.contains(&"DATARUN_WARM=/datarun/warm/go.json".to_string()));
    assert!(!env.iter().any(|v| v.starts_with("DATARUN_ATTEMPT=")));
    let (host, cold) = (body.host_config.unwrap(), cold.host_config.unwrap());
    // Confined as a fold: only the memory cap and the CPU quota wait for the fold's grant.
    assert_eq!(host.memory, Some(256 * MIB as i64));
    assert_eq!(host.memory_swap, host.memory);
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    for (a, b) in [
        (host.readonly_rootfs, cold.readonly_rootfs),
        (host.privileged, cold.privileged),
        (host.init, cold.init),
    ] {
        assert_eq!(a, b);
    }
    assert_eq!(host.pids_limit, cold.pids_limit);
    assert_eq!(host.cap_drop, cold.cap_drop);
    assert_eq!(host.security_opt, cold.security_opt);
    assert_eq!(host.network_mode, cold.network_mode);
    assert_eq!(host.tmpfs, cold.tmpfs);
    let mounts: Vec<(String, String, bool)> = host
        .mounts
        .unwrap()
        .into_iter()
        .map(|m| (m.source.unwrap(), m.target.unwrap(), m.read_only.unwrap()))
        .collect();
    let at = |sub: &str| dir.join(sub).to_string_lossy().into_owned();
    assert_eq!(
        mounts,
        [
            (at("input"), "/datarun/input".into(), true),
            (at("output"), "/datarun/output".into(), false),
            (at("warm"), "/datarun/warm".into(), true),
        ]
    );
}
