"""The pipeline's exceptions: one base, a few specific errors that carry their facts.

Every error prints itself as one line that says what went wrong, where, and
what to do; the CLI prints that line and exits with ``exit_code``.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: a failure raised on purpose is its one line, in a notebook
        as on the command line (``orchestration.failures`` turns it into the stage's message cell)."""
        return [clean_error_line(type(self).__name__, self.message)]


def clean_error_line(ename: str, message: str) -> str:
    """The whole "traceback" of a ``PipelineError`` raised in a notebook cell."""
    return f"{ename}: {message}"


class SettingsError(PipelineError):
    """A setting, parameter, option or environment variable is wrong (exit 2)."""

    exit_code = 2


class DatabaseUnavailable(SettingsError):
    """The database cannot be reached before the run starts (exit 2, nothing written)."""


class SourceError(PipelineError):
    """The API answered in a way that retrying cannot fix (400/401/403/404)."""

    def __init__(self, message: str, *, status: int | None = None, page: int | None = None):
        super().__init__(message)
        self.status = status
        self.page = page


class RetriesExhausted(SourceError):
    """A page kept failing with retryable faults until the retry limit or budget ran out."""

    def __init__(self, message: str, *, page: int | None, attempts: int, last_error: str):
        super().__init__(message, page=page)
        self.attempts = attempts
        self.last_error = last_error


class ResponseShapeError(SourceError):
    """An answer lacks what a configured path names (the records list, a total, a cursor, a next link):
    the configuration does not match the API. Never retried: another attempt gets the same body."""

    def __init__(self, message: str, *, setting: str, path: str, page: int | None):
        super().__init__(message, page=page)
        self.setting = setting
        self.path = path


class QualityGateFailed(PipelineError):
    """The pass rate of a batch is under ``quality.min_pass_rate``: nothing is loaded."""

    def __init__(self, pass_rate: float, threshold: float, top_reasons: dict[str, int]):
        reasons = ", ".join(f"{k} ({v})" for k, v in top_reasons.items()) or "none"
        super().__init__(
            f"quality gate failed: pass rate {pass_rate:.2%} is under quality.min_pass_rate "
            f"{threshold:.2%}; nothing was loaded. Top reasons: {reasons}. Fix the source or "
            f"lower the threshold with -p quality.min_pass_rate=..."
        )
        self.pass_rate = pass_rate
        self.threshold = threshold
        self.top_reasons = top_reasons


class CountsMismatch(PipelineError):
    """The stage counts of a run do not add up (a bug, never a user mistake)."""


class StageFailed(PipelineError):
    """A notebook stage failed; carries the stage, the failure class and the report path."""

    def __init__(self, stage: str, failure_class: str, detail: str, notebook: str | None):
        where = f" (report: {notebook})" if notebook else ""
        super().__init__(f"stage {stage} failed [{failure_class}]: {detail}{where}")
        self.stage = stage
        self.failure_class = failure_class
        self.detail = detail
        self.notebook = notebook


class RunInProgress(PipelineError):
    """Another run holds the run lock."""

    exit_code = 0

    def __init__(self, run_id: str | None):
        super().__init__(
            f"another run is in progress (run_id {run_id or 'unknown'}); "
            "use --wait to wait for it instead of exiting"
        )
        self.run_id = run_id


class Terminated(PipelineError):
    """SIGTERM or SIGINT stopped the command; exit code 128 + the signal's number (143, 130).

    With ``run_id`` the run was recorded first (``failed``, class ``terminated``, its report written)."""

    def __init__(
        self,
        signal_name: str = "SIGTERM",
        run_id: str | None = None,
        stage: str | None = None,
        signum: int = 15,
    ):
        if run_id:
            where = f" during stage {stage}" if stage else ""
            what = (
                f"run {run_id} was recorded as failed (terminated){where}; the next run re-reads its window"
            )
        else:
            what = "no run was under way"
        super().__init__(f"terminated by {signal_name}: {what}")
        self.signal_name = signal_name
        self.run_id = run_id
        self.exit_code = 128 + signum


class AuditIncomplete(PipelineError):
    """A run's audit files (its HTML, ``metrics.json``, page, ledger entry, index entry) could not all be written:
    the run itself is recorded as it ended; ``report RUN_ID`` writes them later. Exit 3 for a run that loaded."""

    exit_code = 3

    def __init__(self, run_id: str, files: list[str], reason: str):
        super().__init__(
            f"run {run_id}: its audit files could not be written: {', '.join(files)} ({reason}); "
            f"make room or fix the folder, then run `report {run_id}` to write them"
        )
        self.run_id = run_id
        self.files = files
        self.reason = reason
