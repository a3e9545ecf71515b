"""Multipart uploads read straight from the request stream, refused as soon as a limit is crossed: nothing
oversized is ever buffered whole or stored. File parts spool to temporary files past 1 MB."""

from __future__ import annotations

from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import IO

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from core.errors import InvalidInput, ServiceError, TooLarge, UnsupportedMedia

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 50
SPOOL_BYTES = 1024 * 1024


@dataclass
class UploadedFile:
    """A file part of a multipart upload (`field` "files"), or a photo URL's answer (`field` "urls", `filename`
    the URL): `refused` says why one could not be fetched, and is reported with the checks of the others."""

    field: str
    filename: str
    file: IO[bytes]
    size: int = 0
    refused: ServiceError | None = None

    def read(self) -> bytes:
        self.file.seek(0)
        return self.file.read()


@dataclass
class MultipartForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)

    def close(self) -> None:
        for upload in self.files:
            upload.file.close()


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    upload: UploadedFile | None = None
    data: bytearray = field(default_factory=bytearray)


def larger_than(most: int) -> str:
    return f"larger than {most // 2**20} MB" if most >= 2**20 else f"larger than {most // 1024} kB"


class _Collector:
    def __init__(self, max_file_bytes: int, max_files: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.form = MultipartForm()
        self.part = _Part()
        self.header_name = b""
        self.header_value = b""

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers[self.header_name.lower()] = self.header_value
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise InvalidInput("A multipart part has no name.")
        self.part.name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            if len(self.form.files) >= self.max_files:
                raise TooLarge(f"Too many files: at most {self.max_files} per request.")
            filename = options[b"filename"].decode("utf-8", "replace")[:255]
            self.part.upload = UploadedFile(self.part.name, filename, SpooledTemporaryFile(SPOOL_BYTES))  # noqa: SIM115
            self.form.files.append(self.part.upload)
        elif len(self.form.fields) >= MAX_FIELDS:
            raise InvalidInput("Too many form fields.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        upload = self.part.upload
        if upload is None:
            if len(self.part.data) + end - start > MAX_FIELD_BYTES:
                raise InvalidInput(f"Form field {self.part.name!r} is too long.")
            self.part.data += data[start:end]
            return
        upload.size += end - start
        if upload.size > self.max_file_bytes:  # the stream stops here: reading on would defeat the limit
            index = [f for f in self.form.files if f.field == upload.field].index(upload)
            limit = larger_than(self.max_file_bytes)
            raise TooLarge(
                f"{upload.filename or 'A file'}: {limit}; the upload stopped there, files after it were not checked.",
                errors=[{"field": f"{upload.field}[{index}]", "detail": f"{upload.filename or 'file'}: {limit}"}],
            )
        upload.file.write(data[start:end])

    def on_part_end(self) -> None:
        if self.part.upload is None:
            self.form.fields[self.part.name] = self.part.data.decode("utf-8", "replace")


async def read_multipart(request: Request, *, max_file_bytes: int, max_files: int) -> MultipartForm:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise UnsupportedMedia("Send multipart/form-data.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_files * (max_file_bytes + 4096) + 1_000_000:
        raise TooLarge("The request is larger than the upload limits allow.")
    collector = _Collector(max_file_bytes, max_files)
    callbacks = {name: getattr(collector, name) for name in dir(collector) if name.startswith("on_")}
    try:
        parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]  # refuses bad boundaries
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        collector.form.close()
        raise InvalidInput("Malformed multipart body.") from exc
    except BaseException:
        collector.form.close()
        raise
    return collector.form
