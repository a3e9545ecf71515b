"""The demo's story, told over HTTP: a user, subjects with photos, trainings, generations in new scenes, and the
downloaded images."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from basemodel import recipe
from demo.client import Client
from demo.quality import Fidelity, subject_fidelity
from demo.scenes import ExampleSubject, find_examples, pair_prompt, scene_prompts
from demo.server import EmbeddedServer

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
    job: dict[str, Any]


@dataclass(frozen=True)
class DemoResult:
    files: list[Path]
    fidelity: Fidelity


class ProgressPrinter:
    """Prints a job when its status changes or its progress moves by a fifth."""

    def __init__(self, labels: dict[str, str], say: Callable[[str], None]) -> None:
        self.labels, self.say = labels, say
        self.last: dict[str, tuple[str, int]] = {}

    def __call__(self, job: dict[str, Any]) -> None:
        step, total = job["progress"]["step"], job["progress"]["total"] or 1
        status, (last_status, last_step) = job["status"], self.last.get(job["id"], ("", -total))
        if status == last_status and step - last_step < total / 5:
            return
        self.last[job["id"]] = (status, step)
        eta = f", eta {job['eta_seconds']:.0f} s" if job.get("eta_seconds") and status == "running" else ""
        queued = f" (position {job['queue_position']})" if status == "queued" and job.get("queue_position") else ""
        error = f": {job['error']['type']}: {job['error']['detail']}" if job.get("error") else ""
        self.say(f"demo:   {self.labels[job['id']]}: {status}{queued} {step}/{total}{eta}{error}")


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
                    say: Callable[[str], None]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(subject, training) per example: the first through the multipart shortcut with train=true, the others
    created, given their photos, then trained, as three separate calls."""
    made = []
    for index, example in enumerate(examples):
        fields = {"name": example.name, "class_word": example.class_word}
        if index == 0:
            created = client.upload("/v1/subjects", example.photos, {**fields, "train": "true"})
            subject, training = created["subject"], created["training"]
        else:
            subject = client.post("/v1/subjects", fields)
            client.upload(f"/v1/subjects/{subject['id']}/photos", example.photos)
            training = client.post("/v1/trainings", {"subject_ids": [subject["id"]], "steps": steps}, job=True)
        say(f"demo: subject {example.name!r}: token {subject['token']!r}, class word {subject['class_word']!r}, "
            f"{len(example.photos)} photos; training {training['id']} queued")
        made.append((subject, training))
    return made


def request_generations(client: Client, options: DemoOptions,
                        trained: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[Requested]:
    """A generation for each prompt: every subject in new scenes, and two subjects together."""
    common = {"num_images": options.images_per_prompt, "steps": options.sample_steps,
              "guidance_scale": options.guidance}
    requests: list[tuple[str, str | None, str, list[dict[str, Any]]]] = []
    for index, (subject, training) in enumerate(trained):
        for k, prompt in enumerate(scene_prompts(subject["token"], subject["class_word"],
                                                 options.prompts_per_subject, offset=index)):
            requests.append((f"{subject['name']}-{k}", subject["name"], prompt, [{"id": training["checkpoint_id"]}]))
    if options.pair and len(trained) >= 2:
        (left, left_training), (right, right_training) = trained[0], trained[1]
        prompt = pair_prompt((left["token"], left["class_word"]), (right["token"], right["class_word"]), "grass")
        requests.append(("pair", None, prompt, [{"id": left_training["checkpoint_id"]},
                                                {"id": right_training["checkpoint_id"]}]))
    jobs = []
    for seed, (stem, shown, prompt, checkpoints) in enumerate(requests):
        body = {**common, "prompt": prompt, "checkpoints": checkpoints, "seed": 1000 * seed}
        jobs.append(Requested(stem, shown, client.post("/v1/generations", body, job=True)))
    return jobs


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> DemoResult:
    """Everything `make demo` does; returns the image files written and how often they show their subject."""
    examples = find_examples(options.examples)[: options.subjects]
    prepare_folders(options)
    settings = options.server_settings()
    say("demo: starting the embedded service with " + " ".join(f"{k}={v}" for k, v in settings.items()))
    with EmbeddedServer(settings, options.data_dir / "server.log") as server:
        assert server.admin_key is not None
        say(f"demo: service at {server.url} (log: {server.log_path}); development admin key {server.admin_key}")
        admin = Client(server.url, server.admin_key)
        user = admin.post("/v1/users", {"name": "demo", "role": "user"})
        client = Client(server.url, user["api_key"])
        say(f"demo: created user {user['id']} (role user) with the admin key; acting as that user")
        trained = create_subjects(client, examples, options.steps, say)
        labels = {t["id"]: f"training of {s['name']}" for s, t in trained}
        done = client.wait([f"/v1/trainings/{t['id']}" for _, t in trained], ProgressPrinter(labels, say),
                           options.timeout, check=server.check_alive)
        failed = [j for j in done if j["status"] != "succeeded"]
        if failed:
            raise RuntimeError(f"training failed: {failed[0]['error']} (log: {server.log_path})")
        trained = [(s, j) for (s, _), j in zip(trained, done, strict=True)]
        for subject, training in trained:
            checkpoint = client.get(f"/v1/checkpoints/{training['checkpoint_id']}")
            say(f"demo: checkpoint of {subject['name']}: {checkpoint['size_bytes']:,} bytes, "
                f"trained in {_seconds(training):.0f} s")
        generations = request_generations(client, options, trained)
        labels = {g.job["id"]: f"generation {g.stem}" for g in generations}
        finished = client.wait([f"/v1/generations/{g.job['id']}" for g in generations], ProgressPrinter(labels, say),
                               options.timeout, check=server.check_alive)
        saved = save_images(client, options.out, generations, finished)
        for row in admin.get("/v1/admin/subjects")["data"]:
            say(f"demo: admin view: {row['name']} of {row['owner']['name']}: {row['photo_count']} photos, "
                f"{row['checkpoint_count']} checkpoint(s), {row['checkpoint_bytes']:,} bytes")
        admin.close()
        client.close()
    return DemoResult(list(saved), score_images(saved))


def score_images(saved: dict[Path, str | None]) -> Fidelity:
    """The subject fidelity of the images of one subject each; the pair's show two and are not scored."""
    return subject_fidelity([(shown, Image.open(path).convert("RGB")) for path, shown in saved.items() if shown])


def _seconds(job: dict[str, Any]) -> float:
    if not job.get("started_at") or not job.get("finished_at"):
        return 0.0
    start, end = (datetime.fromisoformat(job[k].replace("Z", "+00:00")) for k in ("started_at", "finished_at"))
    return (end - start).total_seconds()


def save_images(client: Client, out: Path, generations: list[Requested],
                finished: list[dict[str, Any]]) -> dict[Path, str | None]:
    """Each file written, with the name of the one subject it shows (None for the pair)."""
    files: dict[Path, str | None] = {}
    index = ["file\tprompt\tseed"]
    for requested, job in zip(generations, finished, strict=True):
        if job["status"] != "succeeded":
            raise RuntimeError(f"generation {requested.stem} {job['status']}: {job.get('error')}")
        for k, image in enumerate(job["images"]):
            target = out / f"{requested.stem}-{k}.png"
            client.download(image["url"], target)
            files[target] = requested.subject
            index.append(f"{target.name}\t{job['params'].get('prompt')}\t{image['seed']}")
    (out / "prompts.tsv").write_text("\n".join(index) + "\n")
    return files
