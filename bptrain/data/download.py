"""Fetch mnist.pkl.gz and make sure a good copy is on disk.

The file is fetched with the standard library only, into a temporary file
next to its final place, and renamed into place only after its size and MD5
match. So an interrupted or corrupt transfer never leaves a file that looks
like data, and ``--force`` never loses a good copy for a bad one.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..core.errors import DataError, DownloadError
from .loader import DEFAULT_DATA_PATH, missing_data_message

MNIST_FILENAME = "mnist.pkl.gz"
#: Size and MD5 of the canonical file (the one Nielsen's book and
#: deeplearning.net distributed); every mirror must deliver exactly these bytes.
MNIST_SIZE = 17_051_982
MNIST_MD5 = "a02cd19f81d51c426d7ca14024243ce9"
#: Tried in order. GitHub is the most durable copy; the figshare copy (a
#: fallback, as used by other projects' setup scripts) and deeplearning.net's
#: historical address (offline for years, kept in case it returns) only matter
#: when GitHub fails. The checksum, not the host, is what we trust.
MIRRORS = (
    "https://github.com/mnielsen/neural-networks-and-deep-learning/raw/master/data/mnist.pkl.gz",
    "https://figshare.com/ndownloader/files/25635053",
    "http://deeplearning.net/data/mnist/mnist.pkl.gz",
)
CHUNK_BYTES = 1 << 16
USER_AGENT = "bptrain"  # some hosts refuse the default Python-urllib agent


class _MirrorFailed(Exception):
    """One mirror did not deliver a verified file; the next one is worth trying."""


def download_mnist(
    dest_dir: Path,
    *,
    force: bool = False,
    mirrors=None,
    expected_size: int | None = MNIST_SIZE,
    expected_md5: str | None = MNIST_MD5,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download mnist.pkl.gz into ``dest_dir`` and return its path.

    An existing file is returned untouched (no network) unless ``force``.
    Mirrors are tried in order; a mirror's download counts only if its size
    and MD5 match. Raises :class:`DownloadError` (one line, listing what went
    wrong with each mirror) when none works. ``mirrors`` defaults to
    :data:`MIRRORS`, looked up at call time.
    """
    mirrors = MIRRORS if mirrors is None else mirrors
    dest_dir = Path(dest_dir)
    final_path = dest_dir / MNIST_FILENAME
    if final_path.exists() and not force:
        return final_path
    created = [parent for parent in (dest_dir, *dest_dir.parents) if not parent.exists()]
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create directory {dest_dir}: {_describe(exc)}") from None

    failures = []
    try:
        for url in mirrors:
            try:
                _download_from(
                    url,
                    final_path,
                    expected_size=expected_size,
                    expected_md5=expected_md5,
                    progress=progress,
                    timeout=timeout,
                )
                return final_path
            except _MirrorFailed as exc:
                failures.append(f"{url}: {exc}")
    finally:
        if not final_path.exists():
            _remove_empty(created)  # a failed download leaves no empty data/ behind
    by_hand = f"download {MNIST_FILENAME} from {mirrors[0]} and save it as {final_path}" if mirrors else ""
    raise DownloadError(
        f"could not download {MNIST_FILENAME} ({'; '.join(failures) or 'no mirrors given'}); "
        f"{by_hand + ', ' if by_hand else ''}or pass --data PATH to use a copy you already have"
    )


def _remove_empty(directories) -> None:
    """Remove the directories we created (deepest first) as long as they are still empty."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


def ensure_data(path: Path, *, allow_download: bool, progress: bool = True) -> Path:
    """Return ``path`` if it exists, downloading it first if it is the default location.

    Only the default location is filled automatically: a path the user named
    (by --data or $BPTRAIN_DATA) that does not exist is more likely a typo
    than a request to put 17 MB there.
    """
    path = Path(path)
    if path.exists():
        return path
    is_default = path.resolve() == DEFAULT_DATA_PATH.resolve()
    if is_default and allow_download:
        print(
            f"bptrain: {path} not found; downloading it ({MNIST_SIZE / 1e6:.0f} MB) ...",
            file=sys.stderr,
            flush=True,
        )
        return download_mnist(path.parent, progress=progress)
    message = missing_data_message(path)
    if is_default:
        message += " (automatic download disabled by --no-download)"
    raise DataError(message)


def _download_from(url, final_path: Path, *, expected_size, expected_md5, progress, timeout) -> None:
    """Fetch ``url`` into a temporary file beside ``final_path``; rename it there only if verified."""
    try:
        part = tempfile.NamedTemporaryFile(dir=final_path.parent, delete=False, prefix=".mnist.", suffix=".part")
    except OSError as exc:
        raise DownloadError(f"cannot write in {final_path.parent}: {_describe(exc)}") from None
    part_path = Path(part.name)
    try:
        with part:
            md5 = _stream(url, part, expected_size=expected_size, progress=progress, timeout=timeout)
            _flush_to_disk(part)
        if expected_md5 is not None and md5 != expected_md5.lower():
            raise _MirrorFailed(f"checksum mismatch (MD5 {md5}, expected {expected_md5})")
        try:
            os.chmod(part_path, 0o644)  # temporary files are created private; data need not be
            os.replace(part_path, final_path)
        except OSError as exc:
            raise DownloadError(f"cannot save {final_path}: {_describe(exc)}") from None
    except BaseException:  # including KeyboardInterrupt: never leave a partial file behind
        with contextlib.suppress(OSError):
            part_path.unlink(missing_ok=True)
        raise


def _stream(url, out, *, expected_size, progress, timeout) -> str:
    """Copy the response body of ``url`` to ``out``; return its MD5 hex digest."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise _MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _MirrorFailed(_describe(exc.reason)) from None
    except (http.client.HTTPException, OSError, ValueError) as exc:  # timeouts, bad URLs, protocol errors
        raise _MirrorFailed(_describe(exc)) from None

    with response:
        announced = _content_length(response)
        if announced is not None and expected_size is not None and announced != expected_size:
            raise _MirrorFailed(f"server offers {announced:,} bytes, expected {expected_size:,}")
        md5 = hashlib.md5(usedforsecurity=False)
        received = 0
        with tqdm(
            total=announced or expected_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=MNIST_FILENAME,
            file=sys.stderr,
            disable=not (progress and _is_terminal(sys.stderr)),
            leave=False,
        ) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (http.client.HTTPException, OSError) as exc:
                    raise _MirrorFailed(f"transfer failed after {received:,} bytes ({_describe(exc)})") from None
                if not chunk:
                    break
                received += len(chunk)
                if expected_size is not None and received > expected_size:
                    raise _MirrorFailed(f"server sent more than the expected {expected_size:,} bytes")
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DownloadError(f"cannot write {out.name}: {_describe(exc)}") from None
                md5.update(chunk)
                bar.update(len(chunk))

    expected_total = announced if announced is not None else expected_size
    if expected_total is not None and received < expected_total:
        raise _MirrorFailed(f"transfer cut short: got {received:,} of {expected_total:,} bytes")
    return md5.hexdigest()


def _flush_to_disk(out) -> None:
    """Make sure the bytes are on disk before the rename makes them the real file."""
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as exc:
        raise DownloadError(f"cannot write {out.name}: {_describe(exc)}") from None


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _describe(reason) -> str:
    """A short phrase for an error: 'Connection refused', 'timed out', ..."""
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason).splitlines()[0] if str(reason) else ""
    return text or type(reason).__name__
