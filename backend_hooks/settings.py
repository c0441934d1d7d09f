"""The public path of the settings: ``backend_hooks.settings`` (README "Settings", the
chart's docs: ``ROLE_VARIABLES``, ``VARIABLES``). The module is
``backend_hooks.contract.settings``; this one re-exports its public names."""

from backend_hooks.contract.settings import (
    DELETE_RECHECK_SECONDS as DELETE_RECHECK_SECONDS,
)
from backend_hooks.contract.settings import (
    DELETED_MARK_SECONDS as DELETED_MARK_SECONDS,
)
from backend_hooks.contract.settings import ENV_DEFAULTS as ENV_DEFAULTS
from backend_hooks.contract.settings import FRAME_SECONDS as FRAME_SECONDS
from backend_hooks.contract.settings import (
    MAX_DUE_SHARDS as MAX_DUE_SHARDS,
)
from backend_hooks.contract.settings import (
    MAX_FLUSH_CONCURRENCY as MAX_FLUSH_CONCURRENCY,
)
from backend_hooks.contract.settings import (
    MAX_PUSHER_THREADS as MAX_PUSHER_THREADS,
)
from backend_hooks.contract.settings import (
    MAX_TIMESTAMP_TOLERANCE_MS as MAX_TIMESTAMP_TOLERANCE_MS,
)
from backend_hooks.contract.settings import (
    MIN_DELETE_RECHECK_SECONDS as MIN_DELETE_RECHECK_SECONDS,
)
from backend_hooks.contract.settings import MIN_SECRET_BYTES as MIN_SECRET_BYTES
from backend_hooks.contract.settings import OTHER_VARIABLES as OTHER_VARIABLES
from backend_hooks.contract.settings import ROLE_VARIABLES as ROLE_VARIABLES
from backend_hooks.contract.settings import VARIABLE as VARIABLE
from backend_hooks.contract.settings import VARIABLES as VARIABLES
from backend_hooks.contract.settings import Parser as Parser
from backend_hooks.contract.settings import Settings as Settings
from backend_hooks.contract.settings import Variable as Variable
from backend_hooks.contract.settings import shown_url as shown_url
