"""Tables of the backlog and of its drain history.

This schema is a documented interface: other applications insert phases directly
(README "Schema"). Changes go through an Alembic migration in ``migrations/``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_LEN = 255


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class RunRow(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # Phases of this run per round of the fair share (migration 0007).
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class PhaseRow(Base):
    __tablename__ = "phases"
    __table_args__ = (
        UniqueConstraint("run_id", "phase_id", name="uq_phases_run_phase"),
        Index("ix_phases_state_id", "state", "id"),
        Index("ix_phases_run_state_priority", "run_id", "state", text("priority DESC"), "id"),
        Index("ix_phases_state_priority", "state", "priority"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(ID_LEN), ForeignKey("runs.run_id"))
    phase_id: Mapped[str] = mapped_column(String(ID_LEN))
    state: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Higher runs first (migration 0007).
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # attempts at the last `batchdrain retry`: limits count only what came after it
    retry_base: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_class: Mapped[str | None] = mapped_column(String(32))
    last_failure_reason: Mapped[str | None] = mapped_column(Text)
    parked_reason: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # When a FAILED phase may be retried (backoff, migration 0006); NULL: at once.
    eligible_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class NeedRow(Base):
    """A declared dependency: ``phase_id`` of ``run_id`` runs once ``needs_phase_id`` is COMPLETE."""

    __tablename__ = "phase_needs"
    __table_args__ = (Index("ix_phase_needs_run_need", "run_id", "needs_phase_id"),)

    run_id: Mapped[str] = mapped_column(String(ID_LEN), ForeignKey("runs.run_id"), primary_key=True)
    phase_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    needs_phase_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)


class SessionRow(Base):
    __tablename__ = "drain_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    executor: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    settings: Mapped[dict[str, Any]]
    identity: Mapped[dict[str, Any]]
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class AttemptRow(Base):
    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("run_id", "phase_id", "attempt", name="uq_attempts_phase_attempt"),
        Index("ix_attempts_session_phase", "session_id", "run_id", "phase_id"),
        Index("ix_attempts_adopted_by", "adopted_by"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64), ForeignKey("drain_sessions.session_id"))
    run_id: Mapped[str] = mapped_column(String(ID_LEN))
    phase_id: Mapped[str] = mapped_column(String(ID_LEN))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # running | finished
    executor: Mapped[str] = mapped_column(String(16))
    command: Mapped[list[Any]]
    image: Mapped[str | None] = mapped_column(String(512))
    image_digest: Mapped[str | None] = mapped_column(String(512))
    job_name: Mapped[str | None] = mapped_column(String(63))
    namespace: Mapped[str | None] = mapped_column(String(63))
    # The session that took this attempt over from the one that launched it (adoption).
    adopted_by: Mapped[str | None] = mapped_column(String(64))
    pod_names: Mapped[list[Any] | None] = mapped_column(JSON)
    pod_uid: Mapped[str | None] = mapped_column(String(64))
    node: Mapped[str | None] = mapped_column(String(255))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    exit_code_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    admitted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    container_seconds: Mapped[float | None] = mapped_column(Float)
    total_seconds: Mapped[float | None] = mapped_column(Float)
    failure_class: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    first_error_line: Mapped[str | None] = mapped_column(Text)
    log_mode: Mapped[str | None] = mapped_column(String(16))
    logs: Mapped[list[Any] | None] = mapped_column(JSON)
    identity: Mapped[dict[str, Any]]
    raw_status: Mapped[dict[str, Any] | None] = mapped_column(JSON)
