//! Parquet schema and column reading: where the image lives and how rows are read from it.

use std::path::Path;

use anyhow::{Result, bail};
use parquet::basic::{ConvertedType, LogicalType, Repetition, Type as Physical};
use parquet::column::reader::ColumnReader;
use parquet::data_type::ByteArray;
use parquet::file::reader::RowGroupReader;
use parquet::schema::types::{SchemaDescriptor, Type};

/// Where one parquet file keeps its images.
#[derive(Debug)]
pub(super) struct ImageColumn {
    /// Top-level column name, for messages.
    pub(super) name: String,
    /// Leaf column of the image bytes, with its maximum definition level.
    pub(super) bytes: (usize, i16),
    /// Leaf column of the struct's `path`, if it has one.
    pub(super) path: Option<(usize, i16)>,
}

/// Type of a schema node as a person reads it.
fn describe(t: &Type) -> String {
    if t.is_group() {
        let names: Vec<&str> = t.get_fields().iter().map(|f| f.name()).collect();
        return format!("struct{{{}}}", names.join(", "));
    }
    let info = t.get_basic_info();
    let is_string = info.converted_type() == ConvertedType::UTF8
        || matches!(info.logical_type_ref(), Some(LogicalType::String));
    match t.get_physical_type() {
        Physical::BYTE_ARRAY if is_string => "string".into(),
        Physical::BYTE_ARRAY => "binary".into(),
        other => other.to_string().to_lowercase(),
    }
}

/// The leaf column at `path` that is a flat (not repeated) column of `physical` type.
pub(super) fn leaf(
    schema: &SchemaDescriptor,
    path: &[&str],
    physical: &[Physical],
) -> Option<(usize, i16)> {
    schema.columns().iter().enumerate().find_map(|(i, c)| {
        let same = c
            .path()
            .parts()
            .iter()
            .map(String::as_str)
            .eq(path.iter().copied());
        (same && c.max_rep_level() == 0 && physical.contains(&c.physical_type()))
            .then(|| (i, c.max_def_level()))
    })
}

/// The first struct column with a binary `bytes` field, else a binary column named `image`.
pub(super) fn image_column(file: &Path, schema: &SchemaDescriptor) -> Result<ImageColumn> {
    let fields = schema.root_schema().get_fields();
    let flat = |t: &Type| t.get_basic_info().repetition() != Repetition::REPEATED;
    for f in fields.iter().filter(|f| f.is_group() && flat(f)) {
        if let Some(bytes) = leaf(schema, &[f.name(), "bytes"], &[Physical::BYTE_ARRAY]) {
            let path = leaf(schema, &[f.name(), "path"], &[Physical::BYTE_ARRAY]);
            return Ok(ImageColumn {
                name: f.name().to_string(),
                bytes,
                path,
            });
        }
    }
    if let Some(bytes) = leaf(schema, &["image"], &[Physical::BYTE_ARRAY]) {
        return Ok(ImageColumn {
            name: "image".into(),
            bytes,
            path: None,
        });
    }
    let columns: Vec<String> = fields
        .iter()
        .map(|f| format!("{} ({})", f.name(), describe(f)))
        .collect();
    bail!(
        "{}: no image column (a struct with a binary `bytes` field, as Hugging Face writes \
         images, or a binary column named `image`); its columns are: {}",
        file.display(),
        columns.join(", ")
    )
}

/// Reads one flat leaf column of a row group, a few records at a time.
pub(super) struct Column {
    reader: ColumnReader,
    max_def: i16,
    defs: Vec<i16>,
}

impl Column {
    pub(super) fn open(rg: &dyn RowGroupReader, (leaf, max_def): (usize, i16)) -> Result<Self> {
        Ok(Self {
            reader: rg.get_column_reader(leaf)?,
            max_def,
            defs: Vec::new(),
        })
    }

    pub(super) fn skip(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let skipped = match &mut self.reader {
            ColumnReader::ByteArrayColumnReader(r) => r.skip_records(n)?,
            ColumnReader::Int32ColumnReader(r) => r.skip_records(n)?,
            ColumnReader::Int64ColumnReader(r) => r.skip_records(n)?,
            _ => bail!("unsupported column type"),
        };
        if skipped != n {
            bail!("the column chunk ends early ({skipped} of {n} rows)");
        }
        Ok(())
    }

    /// Whether each of the `records` records just read has a value.
    fn present(&self, records: usize) -> Vec<bool> {
        if self.max_def == 0 {
            return vec![true; records];
        }
        self.defs.iter().map(|&d| d == self.max_def).collect()
    }

    /// The next `n` values as bytes (integers as their decimal text), `None` where null.
    pub(super) fn next(&mut self, n: usize) -> Result<Vec<Option<Vec<u8>>>> {
        self.defs.clear();
        let (records, values): (usize, Vec<Vec<u8>>) = match &mut self.reader {
            ColumnReader::ByteArrayColumnReader(r) => {
                let mut v: Vec<ByteArray> = Vec::new();
                let (records, _, _) = r.read_records(n, Some(&mut self.defs), None, &mut v)?;
                (records, v.iter().map(|b| b.data().to_vec()).collect())
            }
            ColumnReader::Int32ColumnReader(r) => {
                let mut v = Vec::new();
                let (records, _, _) = r.read_records(n, Some(&mut self.defs), None, &mut v)?;
                (
                    records,
                    v.iter().map(|x| x.to_string().into_bytes()).collect(),
                )
            }
            ColumnReader::Int64ColumnReader(r) => {
                let mut v = Vec::new();
                let (records, _, _) = r.read_records(n, Some(&mut self.defs), None, &mut v)?;
                (
                    records,
                    v.iter().map(|x| x.to_string().into_bytes()).collect(),
                )
            }
            _ => bail!("unsupported column type"),
        };
        if records != n {
            bail!("the column chunk ends early ({records} of {n} rows)");
        }
        let mut values = values.into_iter();
        Ok(self
            .present(records)
            .into_iter()
            .map(|p| if p { values.next() } else { None })
            .collect())
    }
}
