"""A tus client process (tuspy), killed by the test mid-upload.

``python -m tests.resumable.tus_child BASE_URL FILE TOKEN CHUNK``: prints the upload URL, then
the offset after each chunk, one per line, and uploads until done (or killed).
"""

from __future__ import annotations

import sys

from tusclient import client


def main() -> None:
    url, path, token, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tus = client.TusClient(url, headers={"PRIVATE-TOKEN": token})
    uploader = tus.uploader(path, chunk_size=chunk)
    uploader.set_url(uploader.create_url())
    print(uploader.url, flush=True)
    while uploader.offset < uploader.get_file_size():
        uploader.upload_chunk()
        print(uploader.offset, flush=True)


if __name__ == "__main__":
    main()
