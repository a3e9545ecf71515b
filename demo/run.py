"""The demo's story, told through the Python SDK (`svdiff_client`) as an app would: a user, subjects with photos,
trainings followed live, generations in new scenes, and the downloaded images."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from PIL import Image
from svdiff_client import Client, Generation, Job, Subject, Training

from basemodel import recipe
from demo.quality import Fidelity, subject_fidelity
from demo.scenes import ExampleSubject, find_examples, pair_prompt, scene_prompts
from demo.server import EmbeddedServer

J = TypeVar("J", bound=Job)
MARKER = ".svdiff-demo"  # a data folder the demo made, so it may wipe it


@dataclass(frozen=True)
class DemoOptions:
    examples: Path
    out: Path
    data_dir: Path
    steps: int = recipe.STEPS  # the bundled base model's calibrated budget
    class_images: int = 16
    class_image_steps: int = 20
    prompts_per_subject: int = 3
    images_per_prompt: int = 2
    sample_steps: int = 20
    guidance: float = 5.0
    pair: bool = True  # one generation with two subjects' checkpoints combined
    subjects: int = 3  # how many of the example folders
    timeout: float = 600.0

    def server_settings(self) -> dict[str, str]:
        return {
            "SVDIFF_DATA_DIR": str(self.data_dir),
            "SVDIFF_DEFAULT_TRAINING_STEPS": str(self.steps),  # the multipart shortcut trains with the default
            "SVDIFF_CLASS_IMAGES": str(self.class_images),
            "SVDIFF_CLASS_IMAGE_STEPS": str(self.class_image_steps),
            "SVDIFF_MIN_PHOTO_SIDE": "64",  # the bundled base model works at 64x64, like the example photos
        }


@dataclass(frozen=True)
class Requested:
    """A generation the demo asked for; its images are saved as `<stem>-<k>.png`."""

    stem: str
    subject: str | None  # the name of the one subject its images show; None for two subjects together
    job: Generation


@dataclass(frozen=True)
class DemoResult:
    files: list[Path]
    fidelity: Fidelity


class ProgressPrinter:
    """Prints a job when its status changes or its progress moves by a fifth."""

    def __init__(self, label: str, say: Callable[[str], None]) -> None:
        self.label, self.say = label, say
        self.last: tuple[str, int] = ("", -1)

    def __call__(self, job: Job) -> None:
        step, total = job.progress.step, job.progress.total or 1
        status, (last_status, last_step) = job.status, self.last
        if status == last_status and step - last_step < total / 5:
            return
        self.last = (status, step)
        eta = f", eta {job.eta_seconds:.0f} s" if job.eta_seconds and status == "running" else ""
        queued = f" (position {job.queue_position})" if status == "queued" and job.queue_position else ""
        error = f": {job.error.type}: {job.error.detail}" if job.error else ""
        self.say(f"demo:   {self.label}: {status}{queued} {step}/{total}{eta}{error}")


def prepare_folders(options: DemoOptions) -> None:
    data = options.data_dir
    if data.exists() and any(data.iterdir()):
        if not (data / MARKER).exists():
            raise FileExistsError(f"{data} holds files the demo did not make; choose another --data-dir")
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    (data / MARKER).write_text("made by `python -m demo`; wiped at its next run\n")
    options.out.mkdir(parents=True, exist_ok=True)
    for old in [*options.out.glob("*.png"), options.out / "prompts.tsv"]:
        old.unlink(missing_ok=True)


def create_subjects(client: Client, examples: list[ExampleSubject], steps: int,
                    say: Callable[[str], None]) -> list[tuple[Subject, Training]]:
    """(subject, training) per example: the first through the multipart shortcut with train=true, the others
    created, given their photos, then trained, as three separate calls."""
    made = []
    for index, example in enumerate(examples):
        if index == 0:
            created = client.subjects.create_with_photos(example.name, example.class_word, example.photos, train=True)
            subject, training = created.subject, created.training
        else:
            subject = client.subjects.create(example.name, example.class_word)
            client.subjects.upload_photos(subject, example.photos)
            training = client.trainings.create([subject], steps=steps)
        say(f"demo: subject {example.name!r}: token {subject.token!r}, class word {subject.class_word!r}, "
            f"{len(example.photos)} photos; training {training.id} queued")
        made.append((subject, training))
    return made


def request_generations(
    client: Client, options: DemoOptions, trained: list[tuple[Subject, Training]]
) -> list[Requested]:
    """A generation for each prompt: every subject in new scenes, and two subjects together."""
    requests: list[tuple[str, str | None, str, list[str]]] = []
    for index, (subject, training) in enumerate(trained):
        assert training.checkpoint_id is not None
        for k, prompt in enumerate(scene_prompts(subject.token, subject.class_word,
                                                 options.prompts_per_subject, offset=index)):
            requests.append((f"{subject.name}-{k}", subject.name, prompt, [training.checkpoint_id]))
    if options.pair and len(trained) >= 2:
        (left, left_training), (right, right_training) = trained[0], trained[1]
        prompt = pair_prompt((left.token, left.class_word), (right.token, right.class_word), "grass")
        assert left_training.checkpoint_id is not None and right_training.checkpoint_id is not None
        requests.append(("pair", None, prompt, [left_training.checkpoint_id, right_training.checkpoint_id]))
    return [Requested(stem, shown, client.generations.create(
                prompt, checkpoints, num_images=options.images_per_prompt, steps=options.sample_steps,
                guidance_scale=options.guidance, seed=1000 * seed))
            for seed, (stem, shown, prompt, checkpoints) in enumerate(requests)]  # fmt: skip


def wait_all(client: Client, jobs: list[tuple[str, J]], timeout: float, say: Callable[[str], None],
             alive: Callable[[], None]) -> list[J]:
    """Follow each job's live events to its end, printing its progress; the server's death ends the wait."""
    deadline = time.monotonic() + timeout
    done = []
    for label, job in jobs:
        alive()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"jobs still running after {timeout:.0f} s")
        done.append(client.wait(job, timeout=remaining, raise_on_failure=False, on_update=ProgressPrinter(label, say)))
    return done


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> DemoResult:
    """Everything `make demo` does; returns the image files written and how often they show their subject."""
    examples = find_examples(options.examples)[: options.subjects]
    prepare_folders(options)
    settings = options.server_settings()
    say("demo: starting the embedded service with " + " ".join(f"{k}={v}" for k, v in settings.items()))
    with EmbeddedServer(settings, options.data_dir / "server.log") as server:
        assert server.admin_key is not None
        say(f"demo: service at {server.url} (log: {server.log_path}); development admin key {server.admin_key}")
        with Client(server.admin_key, server.url) as admin:
            user = admin.users.create("demo")
            say(f"demo: created user {user.id} (role user) with the admin key; acting as that user")
            with Client(user.api_key, server.url) as client:
                saved = _story(client, options, examples, server, say)
            for row in admin.admin.subjects().data:
                say(f"demo: admin view: {row.name} of {row.owner.name}: {row.photo_count} photos, "
                    f"{row.checkpoint_count} checkpoint(s), {row.checkpoint_bytes:,} bytes")
    return DemoResult(list(saved), score_images(saved))


def _story(client: Client, options: DemoOptions, examples: list[ExampleSubject], server: EmbeddedServer,
           say: Callable[[str], None]) -> dict[Path, str | None]:  # fmt: skip
    trained = create_subjects(client, examples, options.steps, say)
    labelled = [(f"training of {subject.name}", training) for subject, training in trained]
    done = wait_all(client, labelled, options.timeout, say, server.check_alive)
    failed = [job for job in done if job.status != "succeeded"]
    if failed:
        raise RuntimeError(f"training failed: {failed[0].error} (log: {server.log_path})")
    trained = [(subject, job) for (subject, _), job in zip(trained, done, strict=True)]
    for subject, training in trained:
        assert training.checkpoint_id is not None
        checkpoint = client.checkpoints.get(training.checkpoint_id)
        say(f"demo: checkpoint of {subject.name}: {checkpoint.size_bytes:,} bytes, "
            f"trained in {_seconds(training):.0f} s")
    generations = request_generations(client, options, trained)
    labelled_generations = [(f"generation {g.stem}", g.job) for g in generations]
    finished = wait_all(client, labelled_generations, options.timeout, say, server.check_alive)
    return save_images(client, options.out, generations, finished)


def score_images(saved: dict[Path, str | None]) -> Fidelity:
    """The subject fidelity of the images of one subject each; the pair's show two and are not scored."""
    return subject_fidelity([(shown, Image.open(path).convert("RGB")) for path, shown in saved.items() if shown])


def _seconds(job: Job) -> float:
    if job.started_at is None or job.finished_at is None:
        return 0.0
    return (job.finished_at - job.started_at).total_seconds()


def save_images(client: Client, out: Path, generations: list[Requested],
                finished: list[Generation]) -> dict[Path, str | None]:
    """Each file written, with the name of the one subject it shows (None for the pair)."""
    files: dict[Path, str | None] = {}
    index = ["file\tprompt\tseed"]
    for requested, job in zip(generations, finished, strict=True):
        if job.status != "succeeded":
            raise RuntimeError(f"generation {requested.stem} {job.status}: {job.error}")
        for k, (image, data) in enumerate(zip(job.images, client.generations.download_images(job), strict=True)):
            target = out / f"{requested.stem}-{k}.png"
            target.write_bytes(data)
            files[target] = requested.subject
            index.append(f"{target.name}\t{job.params.get('prompt')}\t{image.seed}")
    (out / "prompts.tsv").write_text("\n".join(index) + "\n")
    return files
