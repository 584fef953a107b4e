from tests.fixtures_chain import *  # noqa: F403
from tests.fixtures_cli import *  # noqa: F403
from tests.fixtures_db import *  # noqa: F403
