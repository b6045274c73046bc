"""datarun_client: a Python client for datarun's REST API (``/api/v1``).

``Client`` talks to a master (bearer token); it carries the original datarun client's helpers
(``post_data``, ``post_split``, ``custom_post_split``, ``post_submission_fold``,
``get_prediction_new``, ``get_prediction_list``, ``get_submission_fold_detail``,
``get_submission_fold_light_detail``), for CSV datasets and problem datasets (files with a
problem script, split by its ``prepare_data``).
``DatarunWorker`` is a ramp-engine worker that trains RAMP submissions on datarun.
``verify_webhook`` checks a webhook delivery's signature. The package is typed (PEP 561); the
answers' shapes are in ``datarun_client.types``.
"""

from .client import (
    BadRequest,
    Client,
    Conflict,
    DatarunError,
    Forbidden,
    IntegrityError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    SplitFailed,
    Unauthorized,
    Unreachable,
    default_data_dir,
    load_npy,
    verify_webhook,
)
from .ramp import DatarunWorker

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "Client",
    "Conflict",
    "DatarunError",
    "DatarunWorker",
    "Forbidden",
    "IntegrityError",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "SplitFailed",
    "Unauthorized",
    "Unreachable",
    "default_data_dir",
    "load_npy",
    "verify_webhook",
]
