#!/usr/bin/env python3
"""Write the small parquet fixtures under tests/fixtures/parquet/ (needs pyarrow).

The layout copies what Hugging Face datasets publish: `data/<split>-NNNNN-of-NNNNN.parquet`
shards whose `image` column is a struct `{bytes: binary, path: string}`, beside a `label`
string column. Each shard uses another codec (snappy, zstd, gzip) so that all three are read
in tests; `plain_image.parquet` keeps its image in a binary column named `image`, and
`no_image.parquet` has no image column at all. Run it from the repository root:

    python3 tools/make_parquet_fixture.py
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "sample-data" / "shapes" / "images"
OUT = ROOT / "tests" / "fixtures" / "parquet"

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema([("image", IMAGE), ("label", pa.string())])


def row(shape, label):
    """One row: the PNG bytes of `shape-NNNN.png` with its file name as the struct path."""
    name = f"shape-{shape:04d}.png"
    return {"image": {"bytes": (SHAPES / name).read_bytes(), "path": name}, "label": label}


def write(path, rows, codec, row_group_size):
    """Write `rows` with `codec`, `row_group_size` rows per row group."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table, path, compression=codec, row_group_size=row_group_size)


def main():
    data = OUT / "hf" / "data"
    write(
        data / "train-00000-of-00002.parquet",
        [row(0, "red cross"), row(3, "red circle"), row(4, "red triangle")],
        "snappy",
        2,
    )
    write(
        data / "train-00001-of-00002.parquet",
        [row(5, "blue triangle"), row(6, "cyan ring")],
        "zstd",
        2,
    )
    # A row without image bytes or path, as datasets with missing images have.
    missing = {"image": {"bytes": None, "path": None}, "label": "missing"}
    write(
        data / "test-00000-of-00001.parquet",
        [row(3, "red circle"), missing],
        "gzip",
        2,
    )
    table = pa.table({"text": ["a red cross"], "label": pa.array([1], pa.int64())})
    pq.write_table(table, OUT / "no_image.parquet", compression="snappy")
    # Older exports keep the encoded image in a plain binary column named `image`.
    png = (SHAPES / "shape-0006.png").read_bytes()
    table = pa.table({"image": pa.array([png], pa.binary()), "label": pa.array([7], pa.int32())})
    # Plain encoding without statistics, unlike the shards above.
    pq.write_table(
        table,
        OUT / "plain_image.parquet",
        compression="snappy",
        use_dictionary=False,
        write_statistics=False,
    )


if __name__ == "__main__":
    main()
