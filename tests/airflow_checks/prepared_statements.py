"""Two clients take turns on PgBouncer's transaction pool with the drivers Airflow's image ships that prepare
statements (psycopg 3 names them _pg3_N, the same names on every connection; asyncpg prepares every query). One
line per driver: `<driver> ok` or `<driver> ERROR <exception>`. argv: the host, port, database, user, password."""
import asyncio
import os
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


async def run_asyncpg() -> None:
    # What SQLAlchemy makes of Airflow's `postgresql+asyncpg://...?ssl=verify-full`: ssl="verify-full" as a connect
    # argument; the CA comes from PGSSLROOTCERT.
    login = dict(host=host, port=int(port), database=database, user=user, password=password, ssl="verify-full")
    a = await asyncpg.connect(**login)
    b = await asyncpg.connect(**login)
    try:
        for i in range(3):
            for conn in (a, b):
                assert await conn.fetchval("select $1::int + 1", i) == i + 1
    finally:
        await a.close()
        await b.close()


for name, run in (("psycopg", run_psycopg), ("asyncpg", lambda: asyncio.run(run_asyncpg()))):
    try:
        run()
        print(f"{name} ok")
    except Exception as exc:  # noqa: BLE001 - the report is the point
        print(f"{name} ERROR {type(exc).__name__}: {str(exc).splitlines()[0]}")
