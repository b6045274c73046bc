//! The container of an attempt as a pure function of the request and the executor's options:
//! name, labels, environment and the confining HostConfig. No IO here, so every setting that
//! keeps untrusted code in its box is checked by unit tests.

use super::DockerOptions;
use crate::agent::exec::{format_cpus, ExecRequest};
use crate::model::AttemptId;
use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, HostConfigLogConfig, Mount, MountType,
    ResourcesUlimits,
};
use std::collections::{BTreeMap, HashMap};

pub const LABEL_ATTEMPT: &str = "datarun.attempt";
pub const LABEL_FOLD: &str = "datarun.fold";
pub const LABEL_RUNNER: &str = "datarun.runner";
pub const LABEL_NAMESPACE: &str = "datarun.namespace";

/// Where the fold finds its inputs (read-only) and puts its outputs, inside the container.
pub const INPUT_PATH: &str = "/datarun/input";
pub const OUTPUT_PATH: &str = "/datarun/output";
/// The fold's working directory: the parent of `input` and `output`, as the attempt directory
/// is for the process executor, so relative `input/...` and `output/...` paths work the same
/// under both executors. It lies on the read-only root: stray relative writes fail loudly
/// instead of landing among the outputs.
pub const WORK_PATH: &str = "/datarun";

/// Containers of one agent (one runner's journal) share a namespace, so several runners, or
/// several masters in tests, can share one engine without meeting each other's attempts.
pub fn container_name(namespace: &str, attempt: AttemptId) -> String {
    format!("datarun-{namespace}-{attempt}")
}

/// The engine's json-file log is the fold's log while it runs; it is rotated so that a fold
/// printing without end cannot fill the runner's disk. Only the tail is kept anyway.
pub fn log_file_size(log_limit: u64) -> u64 {
    log_limit.saturating_mul(2).clamp(1 << 20, 256 << 20)
}

/// The fold's own variables, then datarun's (which win). PATH and the like come from the image.
pub fn fold_env(req: &ExecRequest) -> BTreeMap<String, String> {
    let mut env = req.env.clone();
    let mut set = |k: &str, v: String| env.insert(k.to_string(), v);
    set("DATARUN_INPUT", INPUT_PATH.into());
    set("DATARUN_OUTPUT", OUTPUT_PATH.into());
    set("DATARUN_ATTEMPT", req.attempt.to_string());
    set("DATARUN_CPUS", format_cpus(req.millicpus));
    set(
        "OMP_NUM_THREADS",
        req.millicpus.div_ceil(1000).max(1).to_string(),
    );
    set("HOME", "/tmp".into());
    // CUDA images set NVIDIA_VISIBLE_DEVICES=all: on a host whose default runtime is nvidia
    // that would hand every GPU to the fold. Name exactly the granted ones ("void" = none).
    let gpus = if req.gpus.is_empty() {
        "void".to_string()
    } else {
        req.gpus.join(",")
    };
    set("NVIDIA_VISIBLE_DEVICES", gpus);
    env
}

/// Everything the engine needs to create the attempt's container. `image_volumes` are the
/// VOLUME paths the image declares: each gets a size-limited tmpfs, since an anonymous volume
/// would be writable host disk outside the grant.
pub fn container_config(
    req: &ExecRequest,
    image: &str,
    opts: &DockerOptions,
    image_volumes: &[String],
) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_ATTEMPT.to_string(), req.attempt.to_string()),
        (LABEL_FOLD.to_string(), req.fold.to_string()),
        (LABEL_RUNNER.to_string(), req.runner.clone()),
        (LABEL_NAMESPACE.to_string(), opts.namespace.clone()),
    ]);
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(req.command.clone()),
        // The command is the whole argv: an image's ENTRYPOINT must not wrap it.
        entrypoint: Some(vec![]),
        env: Some(
            fold_env(req)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        user: Some(opts.user.clone()),
        working_dir: Some(WORK_PATH.to_string()),
        labels: Some(labels),
        network_disabled: Some(!opts.allow_network),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config(req, opts, image_volumes)),
        ..Default::default()
    }
}

/// A warm container (see `warm.rs`): created as a fold's container is (`req` is the warm
/// request: the warm command, its own directories, the warm memory cap, one CPU), plus its read-only
/// warm directory; the environment a fold's has before its grant is known, and
/// `DATARUN_WARM`, the go file it waits for. Labelled with the namespace and the agent's pid,
/// never with an attempt.
pub fn warm_config(
    req: &ExecRequest,
    warm: &crate::inventory::WarmSpec,
    opts: &DockerOptions,
    image_volumes: &[String],
    dir: &std::path::Path,
) -> ContainerCreateBody {
    use super::warm::{LABEL_WARM, WARM_PATH};
    let labels = HashMap::from([
        (LABEL_WARM.to_string(), std::process::id().to_string()),
        (LABEL_NAMESPACE.to_string(), opts.namespace.clone()),
    ]);
    let env = [
        ("DATARUN_INPUT", INPUT_PATH.to_string()),
        ("DATARUN_OUTPUT", OUTPUT_PATH.to_string()),
        ("HOME", "/tmp".to_string()),
        ("NVIDIA_VISIBLE_DEVICES", "void".to_string()),
        ("DATARUN_WARM", format!("{WARM_PATH}/go.json")),
    ];
    let mut config = container_config(req, &warm.image, opts, image_volumes);
    config.labels = Some(labels);
    config.env = Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect());
    if let Some(mounts) = config.host_config.as_mut().and_then(|h| h.mounts.as_mut()) {
        mounts.push(bind(&dir.join("warm"), WARM_PATH, true));
    }
    config
}

pub fn host_config(
    req: &ExecRequest,
    opts: &DockerOptions,
    image_volumes: &[String],
) -> HostConfig {
    let tmpfs_opts = format!("rw,nosuid,nodev,size={},mode=1777", opts.tmpfs_size);
    let mut tmpfs = HashMap::from([("/tmp".to_string(), tmpfs_opts.clone())]);
    for path in image_volumes {
        let covered = path == INPUT_PATH || path == OUTPUT_PATH || path == "/tmp";
        if !covered {
            tmpfs.insert(path.clone(), tmpfs_opts.clone());
        }
    }
    let memory = req
        .memory_limit
        .map(|m| i64::try_from(m).unwrap_or(i64::MAX));
    let device_requests = (!req.gpus.is_empty()).then(|| {
        vec![DeviceRequest {
            driver: Some("nvidia".into()),
            device_ids: Some(req.gpus.clone()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]
    });
    HostConfig {
        memory,
        // Equal to memory: no swap at all.
        memory_swap: memory,
        nano_cpus: (req.millicpus > 0).then(|| i64::from(req.millicpus) * 1_000_000),
        pids_limit: Some(opts.pids_limit),
        network_mode: Some(if opts.allow_network { "bridge" } else { "none" }.into()),
        readonly_rootfs: Some(true),
        tmpfs: Some(tmpfs),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        privileged: Some(false),
        init: Some(true),
        ipc_mode: Some("private".into()),
        // Mounts rather than "src:dst:ro" binds: a host path with ':' or ',' cannot be misread.
        mounts: Some(vec![
            bind(&req.input_dir, INPUT_PATH, true),
            bind(&req.output_dir, OUTPUT_PATH, false),
        ]),
        device_requests,
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("core".into()),
            soft: Some(0),
            hard: Some(0),
        }]),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".into(), log_file_size(req.log_limit).to_string()),
                ("max-file".into(), "2".into()),
            ])),
        }),
        auto_remove: Some(false),
        ..Default::default()
    }
}

fn bind(source: &std::path::Path, target: &str, read_only: bool) -> Mount {
    Mount {
        source: Some(source.to_string_lossy().into_owned()),
        target: Some(target.to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// "uid:gid" (or "uid") as numbers, when the container user is given numerically.
pub fn numeric_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    Some((uid.parse().ok()?, gid.parse().ok()?))
}
