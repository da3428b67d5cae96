"""File data: reading, writing and truncating along a cluster chain.

Interface (``fs`` is the mounted ``MsdosFS``; ``node`` a regular-file ``Node``):
    read_data(fs, node, offset, size) -> bytes
    write_data(fs, node, offset, data) -> int        (ENOSPC: a prefix or nothing; EFBIG)
    truncate(fs, node, size)                          (frees clusters past the end / zero-fills)

A write that starts past the end, or a truncate that extends, checks first that the zero fill
fits (ENOSPC with nothing changed otherwise).

Rules: contiguous clusters move in one ``read_run``/``write_run``; only the partial sectors at the
two ends of a write are read back.  FAT has no holes: extending a file writes zeros.  The size
never exceeds what the chain holds (``MsdosFS`` clamps hostile sizes when loading the node).
Files are limited to 4 GiB - 1 bytes (EFBIG beyond).
"""

from __future__ import annotations

from rumpkernel.kern.errno import Errno, KernelError, corrupt

MAX_FILE_SIZE = 0xFFFFFFFF
_ZERO_CHUNK = 1 << 20
_RUN_LIMIT = 1 << 22


def _runs(fs, chain: list[int], first_sec: int, last_sec: int):
    """Device sector runs (start, count) covering file sectors first_sec..last_sec."""
    geo = fs.geo
    spc = geo.cluster_sectors
    max_run = max(1, _RUN_LIMIT // geo.sector_size)
    start = count = 0
    f = first_sec
    while f <= last_sec:
        ci, within = divmod(f, spc)
        n = min(spc - within, last_sec - f + 1)
        dev = geo.data_start + (chain[ci] - 2) * spc + within
        if count and dev == start + count and count + n <= max_run:
            count += n
        else:
            if count:
                yield start, count
            start, count = dev, n
        f += n
    if count:
        yield start, count


def read_data(fs, node, offset: int, size: int) -> bytes:
    fsize = node.entry.size
    if size <= 0 or offset >= fsize:
        return b""
    end = min(offset + size, fsize)
    bps = fs.geo.sector_size
    chain = fs.chain_of(node)
    first, last = offset // bps, (end - 1) // bps
    if (last // fs.geo.cluster_sectors) >= len(chain):
        raise corrupt(f"msdos: file {node.ino} larger than its cluster chain")
    bio = fs.bio
    data = b"".join(bio.read_run(s, n) for s, n in _runs(fs, chain, first, last))
    skip = offset - first * bps
    return data[skip : skip + end - offset]


def _ensure_clusters(fs, node, end: int) -> int:
    """Grow the chain to hold ``end`` bytes; return the byte count it can hold (maybe less)."""
    cs = fs.geo.cluster_size
    chain = fs.chain_of(node)
    need = -(-end // cs) - len(chain)
    if need <= 0:
        return end
    fs.fat.ensure_free(need)
    got = min(need, fs.fat.free_count)
    if got <= 0:
        return len(chain) * cs
    new = fs.fat.allocate(got, near=chain[-1] if chain else 0)
    if chain:
        fs.fat.link(chain[-1], new[0])
    else:
        fs.set_first_cluster(node, new[0])
    fs.own(node, new)
    chain.extend(new)
    return min(end, len(chain) * cs)


def _store(fs, node, start: int, payload: bytes, old_size: int) -> None:
    """Write ``payload`` at file offset ``start`` (clusters already allocated)."""
    bps = fs.geo.sector_size
    bio = fs.bio
    chain = node.chain
    end = start + len(payload)
    first, last = start // bps, (end - 1) // bps
    runs = list(_runs(fs, chain, first, last))
    head = start - first * bps
    tail = (last + 1) * bps - end
    buf = payload
    if head or tail:
        pre = bio.read(runs[0][0])[:head] if head else b""
        post = b""
        if tail:
            ls = runs[-1][0] + runs[-1][1] - 1
            post = bio.read(ls)[bps - tail :] if end < old_size else bytes(tail)
        buf = pre + payload + post
    pos = 0
    mv = memoryview(buf)
    for s, n in runs:
        bio.write_run(s, mv[pos : pos + n * bps])
        pos += n * bps


def write_data(fs, node, offset: int, data: bytes) -> int:
    if not data:
        return 0
    if offset >= MAX_FILE_SIZE:
        raise KernelError(Errno.EFBIG, "msdos: files end at 4 GiB - 1")
    data = bytes(data[: MAX_FILE_SIZE - offset])
    old = node.entry.size
    if offset > old:
        _need_room(fs, node, offset + 1)
        _zero_fill(fs, node, old, offset)
        old = node.entry.size
        if old < offset:
            raise KernelError(Errno.ENOSPC, "msdos: file system full")
    end = _ensure_clusters(fs, node, offset + len(data))
    if end <= offset:
        _trim(fs, node)
        raise KernelError(Errno.ENOSPC, "msdos: file system full")
    written = end - offset
    try:
        _store(fs, node, offset, data[:written], old)
    except KernelError:
        _trim(fs, node)
        raise
    fs.file_changed(node, max(old, end))
    return written


def _trim(fs, node) -> None:
    """Give back clusters past the file's size (a write that failed after allocating), so the
    chain and the size never disagree on disk."""
    chain = fs.chain_of(node)
    keep = -(-node.entry.size // fs.geo.cluster_size)
    if keep < len(chain):
        fs.release(node, chain[keep:])
        del chain[keep:]
        if keep:
            fs.fat.set_eoc(chain[-1])
        else:
            fs.set_first_cluster(node, 0)


def _need_room(fs, node, end: int) -> None:
    """ENOSPC, before anything changes, when the volume cannot hold ``end`` bytes of file."""
    more = -(-end // fs.geo.cluster_size) - len(fs.chain_of(node))
    fs.fat.ensure_free(more)
    if more > fs.fat.free_count:
        raise KernelError(Errno.ENOSPC, f"msdos: file system full ({more} clusters needed, "
                          f"{fs.fat.free_count} free)")


def _zero_fill(fs, node, old: int, upto: int) -> None:
    pos = old
    while pos < upto:
        n = min(_ZERO_CHUNK, upto - pos)
        end = _ensure_clusters(fs, node, pos + n)
        if end <= pos:
            break
        try:
            _store(fs, node, pos, bytes(end - pos), node.entry.size)
        except KernelError:
            _trim(fs, node)
            raise
        fs.file_changed(node, end)
        pos = end


def truncate(fs, node, size: int) -> None:
    if size > MAX_FILE_SIZE:
        raise KernelError(Errno.EFBIG, "msdos: files end at 4 GiB - 1")
    old = node.entry.size
    if size > old:
        _need_room(fs, node, size)
        _zero_fill(fs, node, old, size)
        if node.entry.size < size:
            raise KernelError(Errno.ENOSPC, "msdos: file system full")
        return
    node.entry = node.entry.replace(size=size)
    _trim(fs, node)
    fs.file_changed(node, size)
