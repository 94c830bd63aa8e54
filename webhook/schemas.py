"""The response models of the OpenAPI document (:mod:`webhook.openapi`): the JSON the API
answers (the job view of DESIGN.md, the batch view, errors), as pydantic models."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.jobs.spec import FollowUp, JobSpec

ID_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"
JobStatusName = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"]
StepStatusName = Literal["waiting", "queued", "submitting", "submitted", "running", "modal",
                         "storing", "succeeded", "failed", "cancelled", "skipped"]


class _Open(BaseModel):
    """Response objects may gain fields; the listed ones keep their names."""

    model_config = ConfigDict(extra="allow")


class Image(_Open):
    key: str = Field(description="the object's real key (S3: in its bucket, storage prefix "
                                 "included; files: below the storage root; .mp4 for a "
                                 "video clip)")
    sink: Literal["s3", "file"] | None = None
    bucket: str | None = Field(None, description="S3 bucket (null for files)")
    path: str | None = Field(None, description="absolute file path (null for S3)")
    uri: str | None = Field(None, description="s3://bucket/key or file:///path")
    url: str | None = Field(None, description="presigned or file URL built from the record "
                                              "(absent in lists)")
    sha256: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    thumbnail: dict[str, Any] | None = Field(None, description="the JPEG thumbnail next to it")
    available: bool | None = Field(None, description="GET /v1/jobs/{id}: still in its store")
    unavailableReason: str | None = None
    contentType: str | None = Field(None, description="image/png, ..., video/mp4")
    part: str | None = Field(None, description="'' for the result; q1..q4 grid quarters; "
                             "clip1.. and poster/poster1.. for videos")
    poster: str | None = Field(None, description="a video clip's poster image key")


class StepView(_Open):
    id: str
    parent: str | None
    upstream: str | None = Field(None, description="the upstream of the fleet that holds its task")
    waiting: str | None = Field(None, description="why a queued step is not dispatched "
                                "(its upstreams are paused)")
    label: str = Field(description="IMAGINE, U1, V2, 'Zoom Out 2x'...")
    action: str | None
    customId: str | None
    status: StepStatusName
    progress: str = Field(description="'93%' while running, '' before")
    taskId: str | None = Field(description="upstream task id")
    failReason: str | None
    attempts: int
    images: list[Image]
    times: dict[str, str | None]
    finalPrompt: str | None
    retryable: bool = Field(description="a retry can run this failed step again")
    retryReason: str | None = Field(description="why a retry cannot help this failed step")
    seed: str | None = Field(None, description="image seed (only when asked: seed true)")
    uploads: list[str] | None = Field(None, description="UPLOAD: the hosted URLs")
    video: bool | None = Field(None, description="the step made a video (images are MP4)")
    gaveUp: str | None = Field(None, description="why mjflow stopped waiting for its task "
                               "(deadline, lost task); it may still succeed late")
    lateSucceeded: bool | None = Field(None, description="its task succeeded upstream after "
                                       "mjflow gave up; its result was stored anyway")
    lateSucceededAt: str | None = Field(None, description="when that late success was seen")
    lateUntil: str | None = Field(None, description="given up: a late success of its task is "
                                  "still stored until then")


class JobView(_Open):
    id: str
    status: JobStatusName
    batch: str | None
    key: str | None = Field(description="item key inside its batch")
    action: str | None
    prompt: str | None
    metadata: dict[str, Any]
    callbackUrl: str | None
    priority: int
    createdAt: str | None = Field(description="ISO-8601")
    finishedAt: str | None = Field(description="ISO-8601 or null while not finished")
    retryable: bool = Field(description="some failed step can be retried")
    steps: list[StepView]


class JobDetail(JobView):
    deliveries: list[dict[str, Any]] = Field(description="signed events sent to callbackUrl")
    manifest: str | None = Field(description="real key of the job's manifest.json")
    manifestUri: str | None = Field(None, description="its s3:// or file:// URI")
    spend: Spend | None = Field(None, description="what its accepted tasks cost, per upstream")


class NotRetried(_Open):
    stepId: str
    label: str
    reason: str | None
    jobId: str | None = None
    key: str | None = Field(None, description="the item key (batch retries)")


class AddSteps(FollowUp):
    """Act later: a follow-up (with its own ``then``) under a step of an existing job."""

    step: str = Field("root", min_length=1, max_length=200,
                      description="the parent step: its id, its label (when unique) or root")


class JobAdded(JobDetail):
    added: list[str] = Field(description="ids of the steps added")


class JobRetried(JobDetail):
    retried: int = Field(description="steps reopened")
    notRetried: list[NotRetried] = Field(description="failed steps a retry cannot help")


class JobPage(_Open):
    items: list[JobView]
    next: str | None = Field(description="cursor of the next page, null on the last")


class ErrorDetail(_Open):
    path: str = Field(description="field path, e.g. then[1].button or lines[4].prompt")
    message: str
    line: int | None = Field(None, description="JSONL line number")


class Error(_Open):
    error: str = Field(description="machine-readable code: invalid_request, not_found, ...")
    message: str
    details: list[ErrorDetail] | None = None


class BatchCounts(_Open):
    queued: int
    running: int
    succeeded: int
    partial: int
    failed: int
    cancelled: int
    expired: int = Field(description="purged by retention after finishing")


class Submitted(_Open):
    created: int
    done: int = Field(description="already succeeded: not redone")
    inProgress: int = Field(description="already queued or running: not duplicated")
    retried: int = Field(description="partial jobs whose failed steps run again")
    renewed: int = Field(description="failed or cancelled jobs replaced by a new job")


class Spend(_Open):
    total: float = Field(description="cost of the accepted tasks (the upstreams' costs)")
    byUpstream: dict[str, float]


class BatchView(_Open):
    id: str
    name: str | None
    status: JobStatusName
    createdAt: str | None
    updatedAt: str | None
    finishedAt: str | None
    total: int = Field(description="items (distinct keys)")
    finished: int
    counts: BatchCounts
    progress: float = Field(description="finished / total, 0..1")
    throughputPerMin: float | None
    etaSeconds: float | None
    maxCost: float | None = None
    spend: Spend | None = None
    done: bool


class BatchCreated(BatchView):
    submitted: Submitted


class RetryCounts(_Open):
    jobs: int
    steps: int
    notRetried: int = Field(description="failed steps a retry cannot help")


class BatchRetried(BatchView):
    retried: RetryCounts
    notRetried: list[NotRetried] = Field(description="at most 100 of them, with why")


class BatchCancelled(BatchView):
    cancelled: int


class BatchPage(_Open):
    items: list[BatchView]
    next: str | None


class ReportRow(_Open):
    key: str
    jobId: str
    status: Literal["queued", "running", "succeeded", "partial", "failed", "cancelled", "expired"]
    prompt: str | None
    imageKeys: list[str] = Field(description="each object's real key")
    imageUris: list[str] = Field(description="s3://bucket/key or file:///path")
    reason: str | None
    createdAt: str | None
    finishedAt: str | None
    cost: float = Field(0.0, description="what the job's accepted tasks cost")


class BatchReport(_Open):
    batch: str
    items: list[ReportRow]
    spend: Spend | None = None


class BatchObject(BaseModel):
    """The object form of a batch body."""

    model_config = ConfigDict(extra="forbid")

    items: list[JobSpec | str] = Field(description="job specs or prompts")
    name: str | None = Field(None, min_length=1, max_length=200,
                             description="the same name resumes the same batch")
    batchId: str | None = Field(None, pattern=ID_PATTERN)
    then: list[Any] | None = Field(None, description="default follow-ups for items without then")
    maxCost: float | None = Field(None, ge=0, description="budget of the batch's jobs together "
                                  "(the upstreams' costs); steps past it end skipped")


class UpstreamState(_Open):
    size: float
    max: int
    inUse: int
    paused: bool
    reason: str | None
    pausedSince: float | None
    cooldownUntil: float | None
    holdReason: str | None = None
    capacity: int | None = None
    capacityLearnedAt: float | None = None
    knownGood: int | None = None
    upstreamQueued: int | None = None
    breaker: Literal["closed", "open", "probing"] = "closed"
    consecutiveFailures: int = 0
    breakerTrips: int = 0
    signals: dict[str, int] = Field(default_factory=dict)


class UpstreamDetail(UpstreamState):
    profile: str
    recentAnswers: list[dict[str, Any]]


class UpstreamView(_Open):
    name: str
    profile: str
    host: str
    enabled: bool
    priority: int
    weight: float
    modes: list[str]
    actions: list[str]
    window: UpstreamState
    health: Literal["ok", "degraded", "cooling-down", "paused"]
    answerCounts: dict[str, int]
    recentAnswers: list[dict[str, Any]]
    spendToday: float


class UpstreamList(_Open):
    upstreams: list[UpstreamView]
    routing: Literal["priority", "cheapest"]
    budgetPerDay: float | None
    spendToday: float


class Health(_Open):
    status: str


class Ready(_Open):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


MODELS: tuple[type[BaseModel], ...] = (
    JobSpec, AddSteps, JobView, JobDetail, JobAdded, JobRetried, JobPage, Error, BatchView, BatchCreated,
    BatchRetried, BatchCancelled, BatchPage, BatchReport, BatchObject, UpstreamState,
    UpstreamDetail, UpstreamView, UpstreamList, Health, Ready)
