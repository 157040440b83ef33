"""Engine, session factory and the session dependency, as in the seed's database.py."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine


def _database_url() -> str:
    driver = os.environ.get("SEED_PEER_DRIVER", "asyncpg")
    url = make_url(os.environ["DATABASE_URL"]).set(drivername=f"postgresql+{driver}")
    return url.render_as_string(hide_password=False)


engine = create_async_engine(
    _database_url(),
    pool_size=int(os.environ.get("DB_POOL_SIZE") or 10),
    max_overflow=int(os.environ.get("DB_MAX_OVERFLOW") or 0),
)
# expire_on_commit=False: the seed returns rows read in a committed session.begin() block,
# which an expired object could not lazy-load under asyncio.
async_session = async_sessionmaker(
    bind=engine, class_=AsyncSession, autoflush=False, expire_on_commit=False
)


async def get_db_session() -> AsyncIterator[AsyncSession]:
    async with async_session() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise


DBSessionDep = Annotated[AsyncSession, Depends(get_db_session)]
