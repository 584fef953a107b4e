from tests.fixtures_db import *  # noqa: F403
