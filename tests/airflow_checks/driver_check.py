"""Which DB-API driver SQLAlchemy picks for each metadata URL given on the command line, in real Airflow's
environment: prints `<url scheme> -> <driver> (<module>)` or `<url scheme> -> ERROR <reason>`."""
import importlib
import sys

from sqlalchemy.engine import make_url

for url in sys.argv[1:]:
    parsed = make_url(url)
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()                      # raises when the driver is not installed
        module = importlib.import_module(dialect.driver)
        print(f"{parsed.drivername} -> {dialect.driver} ({module.__name__})")
    except Exception as exc:  # noqa: BLE001 - the report is the point
        print(f"{parsed.drivername} -> ERROR {type(exc).__name__}: {exc}")
