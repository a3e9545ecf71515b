"""Request bodies and the response shapes that only the API uses (jobs and files are in core.views)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.generation_options import DEFAULT_QUALITY, FORMATS, AspectRatio, OutputFormat, SchedulerName, aspect_table


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    return value


Text = AfterValidator(_no_nul)  # on every free-text type: PostgreSQL text cannot hold a NUL
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), Text]
ClassWord = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z][a-z -]{0,48}[a-z]$|^[a-z]$")
]
Token = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{1,31}$")]
Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), Text]
WebhookUrl = Annotated[str, StringConstraints(max_length=2000), Text]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Strict):
    name: Name
    role: Literal["user", "admin"] = "user"


class UserOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime


class UserCreated(UserOut):
    api_key: str = Field(description="Shown once: only its hash is stored.")
    webhook_secret: str = Field(description="Signs this user's webhooks (Standard Webhooks, `whsec_` base64 key).")


class ApiKeyOut(BaseModel):
    id: str
    prefix: str = Field(description="The key's first characters, to recognise it; the key itself is never shown again.")
    created_at: datetime
    last_used_at: datetime | None = Field(description="To a few minutes.")
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="Shown once: only its hash is stored.")


class ApiKeyList(BaseModel):
    data: list[ApiKeyOut]


TOKEN_DESCRIPTION = (
    "One lowercase word naming the subject in prompts. Default: the first of the service's default tokens (rare "
    "identifiers, each a single token of the base model's tokenizer; 20 unless configured) that none of your "
    "subjects uses; once your subjects use them all, omitting `token` answers 409: pass one."
)


class SubjectCreate(Strict):
    name: Name
    class_word: ClassWord = Field(description="What the subject is, e.g. `dog` or `teddy bear`.")
    token: Token | None = Field(default=None, description=TOKEN_DESCRIPTION)


class TrainingCreate(Strict):
    subject_ids: list[str] = Field(min_length=1, max_length=3)
    steps: int | None = Field(default=None, ge=1)
    learning_rate: float | None = Field(default=None, gt=0, le=1)
    prior_preservation: bool = True
    cut_mix_unmix: bool | None = Field(default=None, description="Default: true when several subjects.")
    train_text_encoder: bool = True
    webhook_url: WebhookUrl | None = None

    @model_validator(mode="after")
    def _distinct_subjects(self) -> TrainingCreate:
        if len(set(self.subject_ids)) != len(self.subject_ids):
            raise ValueError("subject_ids must be distinct")
        if self.cut_mix_unmix and len(self.subject_ids) < 2:
            raise ValueError("cut_mix_unmix needs at least two subjects")
        return self


class CheckpointRef(Strict):
    id: str
    scale: float = Field(default=1.0, ge=-2.0, le=2.0)


SCHEDULER_DESCRIPTION = (
    "The sampler: `ddim` (DDIM), `dpm++` (DPM-Solver++ multistep, good images in fewer steps) or `euler_a` (Euler "
    "ancestral: fresh noise every step, so the same seed gives another image). Each is built from the base model's "
    "own scheduler config, so its training noise schedule is kept. Default: the base pipeline's own scheduler, "
    "which is DDIM for every base this service loads. The choice holds for this generation only."
)
OUTPUT_FORMAT_DESCRIPTION = (
    "How the images are stored and served: `png` (lossless, the default), `jpeg` or `webp` (lossy, see `quality`). "
    "Each image of the job names its `format` and `content_type`; its link serves that Content-Type."
)
QUALITY_DESCRIPTION = "1-100, for `jpeg` and `webp` only (with `png`: 422). Default: 90."
ASPECT_RATIO_DESCRIPTION = (
    "Instead of `width` and `height` (both: 422): the image is about as many pixels as the base model's native "
    "square (its UNet sample size times the VAE factor), each side a multiple of 8. The sizes: on the bundled "
    f"64 px base {aspect_table(64)}; on a 512 px base (SD 1.5) {aspect_table(512)}; on a 768 px base (SD 2.x) "
    f"{aspect_table(768)}. The job's images carry the size they were made at."
)
GENERATION_OPTIONS = ("scheduler", "output_format", "quality", "aspect_ratio")  # added in API v1.1


class GenerationCreate(Strict):
    prompt: Prompt
    negative_prompt: Annotated[str, StringConstraints(max_length=2000), Text] | None = None
    checkpoints: list[CheckpointRef] = Field(default_factory=list, max_length=3)
    num_images: int = Field(default=1, ge=1, le=4)
    seed: Seed | None = None
    steps: int | None = Field(default=None, ge=1, le=150)
    guidance_scale: float | None = Field(default=None, ge=0, le=30)
    width: int | None = Field(default=None, ge=64, le=1024, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=1024, multiple_of=8)
    scheduler: SchedulerName | None = Field(default=None, description=SCHEDULER_DESCRIPTION)
    output_format: OutputFormat = Field(default="png", description=OUTPUT_FORMAT_DESCRIPTION)
    quality: int | None = Field(default=None, ge=1, le=100, description=QUALITY_DESCRIPTION)
    aspect_ratio: AspectRatio | None = Field(default=None, description=ASPECT_RATIO_DESCRIPTION)
    webhook_url: WebhookUrl | None = None

    @model_validator(mode="after")
    def _distinct_checkpoints(self) -> GenerationCreate:
        if len({c.id for c in self.checkpoints}) != len(self.checkpoints):
            raise ValueError("checkpoints must be distinct")
        return self

    @field_validator("quality")
    @classmethod
    def _quality_of_a_lossy_format(cls, quality: int | None, info: ValidationInfo) -> int | None:
        if quality is not None and info.data.get("output_format") == "png":  # absent: output_format was invalid
            raise ValueError("quality applies to output_format jpeg or webp, not png")
        return quality

    @field_validator("aspect_ratio")
    @classmethod
    def _aspect_ratio_or_size(cls, ratio: str | None, info: ValidationInfo) -> str | None:
        if ratio is not None and (info.data.get("width") is not None or info.data.get("height") is not None):
            raise ValueError("give aspect_ratio or width and height, not both")
        return ratio

    def effective_quality(self) -> int | None:
        """`quality`, or the default of a lossy format; None for png."""
        image_format = FORMATS[self.output_format]
        return (self.quality or DEFAULT_QUALITY) if image_format.lossy else None

    def request_payload(self) -> dict[str, Any]:
        """The body as the Idempotency-Key compares it: the v1.1 options left at their defaults are not in it, so
        a body without them compares as it did before v1.1."""
        data = self.model_dump()
        for name in GENERATION_OPTIONS:
            if data[name] == type(self).model_fields[name].default:
                del data[name]
        return data


class EditFields(Strict):
    source_prompt: Prompt
    target_prompt: Prompt
    steps: int | None = Field(default=None, ge=1, le=150)
    strength: float | None = Field(default=None, ge=0, le=1)
    seed: Seed | None = None
    webhook_url: WebhookUrl | None = None


class SubjectMultipartFields(Strict):
    name: Name
    class_word: ClassWord
    token: Token | None = Field(default=None, description=TOKEN_DESCRIPTION)
    train: bool = False
    webhook_url: WebhookUrl | None = None


BINARY = {"type": "string", "format": "binary"}


def multipart_body(
    required: list[str], properties: dict[str, Any], json_schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """OpenAPI `requestBody` of a multipart route (FastAPI cannot infer it from a streamed body); `json_schema`
    when the route takes JSON too."""
    content: dict[str, Any] = {"application/json": {"schema": json_schema}} if json_schema else {}
    content["multipart/form-data"] = {"schema": {"type": "object", "required": required, "properties": properties}}
    return {"requestBody": {"required": True, "content": content}}
