"""The core: record rules, quality rules, counts and the chunk loop. Pure data in, data out: no I/O but run folders."""
