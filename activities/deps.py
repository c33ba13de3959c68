"""What activities need from the outside world, built once per worker process and handed to each class."""

from __future__ import annotations

from dataclasses import dataclass

from pymongo import MongoClient
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from config import Settings
from dm.messages import MessageStore
from dm.messages import connect as connect_mongo
from storage.db import create_db_engine, session_factory


@dataclass
class ActivityDeps:
    """The clients shared by every activity of one worker process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker
    mongo: MongoClient
    messages: MessageStore

    @classmethod
    def open(cls, settings: Settings) -> ActivityDeps:
        """Create the worker's clients (no I/O happens until first use)."""
        engine = create_db_engine(settings.sqlalchemy_url)
        mongo = connect_mongo(settings.mongo_url, selection_ms=5000)
        return cls(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            mongo=mongo,
            messages=MessageStore(mongo, settings.mongo_database),
        )

    def close(self) -> None:
        """Release the clients."""
        self.mongo.close()
        self.engine.dispose()
