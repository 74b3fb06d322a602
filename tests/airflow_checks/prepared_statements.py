"""Two clients take turns on PgBouncer's transaction pool with the drivers Airflow's image ships that prepare
statements (psycopg 3 names them _pg3_N, the same names on every connection; asyncpg prepares every query). One
line per driver: `<driver> ok` or `<driver> ERROR <exception>`. argv: the host, port, database, user, password."""
import asyncio
import os
import subprocess
import sys

import asyncpg
import psycopg

host, port, database, user, password = sys.argv[1:6]
ca = os.environ["PGSSLROOTCERT"]


def run_psycopg() -> None:
    conninfo = dict(host=host, port=port, dbname=database, user=user, password=password, sslmode="verify-full",
                    sslrootcert=ca, prepare_threshold=0)           # prepare every statement, as a busy client would
    with psycopg.connect(**conninfo) as a, psycopg.connect(**conninfo) as b:
        for i in range(3):
            for conn in (a, b):
                with conn.transaction():
                    assert conn.execute("select %s::int + 1", (i,)).fetchone()[0] == i + 1


async def asyncpg_client(rounds: int) -> None:
    # What SQLAlchemy makes of Airflow's `postgresql+asyncpg://...?ssl=verify-full`: ssl="verify-full" as a connect
    # argument; the CA comes from PGSSLROOTCERT.
    conn = await asyncpg.connect(host=host, port=int(port), database=database, user=user, password=password,
                                 ssl="verify-full")
    try:
        for i in range(rounds):
            assert await conn.fetchval("select $1::int + 1", i) == i + 1
    finally:
        await conn.close()


def run_asyncpg() -> None:
    """asyncpg numbers its statements per process (__asyncpg_stmt_1__, ...), and Airflow runs it in many
    processes: one client here, one in a second process, taking turns on the pool."""
    async def first_then_second() -> None:
        conn = await asyncpg.connect(host=host, port=int(port), database=database, user=user, password=password,
                                     ssl="verify-full")
        try:
            assert await conn.fetchval("select $1::int + 1", 0) == 1
            other = subprocess.run([sys.executable, __file__, *sys.argv[1:6], "--asyncpg-client"],
                                   capture_output=True, text=True, timeout=60)
            if other.returncode != 0:
                raise RuntimeError(f"second process: {(other.stderr.strip().splitlines() or ['?'])[-1]}")
            assert await conn.fetchval("select $1::int + 1", 1) == 2
        finally:
            await conn.close()
    asyncio.run(first_then_second())


if sys.argv[6:] == ["--asyncpg-client"]:
    try:
        asyncio.run(asyncpg_client(3))
    except Exception as exc:  # noqa: BLE001 - one line for the parent
        sys.exit(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    sys.exit(0)

for name, run in (("psycopg", run_psycopg), ("asyncpg", run_asyncpg)):
    try:
        run()
        print(f"{name} ok")
    except Exception as exc:  # noqa: BLE001 - the report is the point
        print(f"{name} ERROR {type(exc).__name__}: {str(exc).splitlines()[0]}")
