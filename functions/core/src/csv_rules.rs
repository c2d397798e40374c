//! Every rule about the CSV files the service reads and writes.
//!
//! Uploads come from spreadsheets edited by people, so the reader is lenient
//! where intent is obvious (header spelling, BOM, line endings, blank rows,
//! trailing commas) and strict where a guess could process the wrong images.
//! A rejected upload lists every problem with its line and column, so the
//! uploader can fix the file in one pass instead of one error per attempt.

use std::borrow::Cow;
use std::collections::HashMap;

use csv::{ReaderBuilder, StringRecord, Terminator, WriterBuilder};

use crate::http_url::HttpUrl;

/// Upper bounds that keep one request within what a single run can process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvLimits {
    pub max_bytes: usize,
    pub max_rows: usize,
    pub max_images: usize,
}

impl Default for CsvLimits {
    fn default() -> Self {
        CsvLimits { max_bytes: 5 * 1024 * 1024, max_rows: 10_000, max_images: 10_000 }
    }
}

impl CsvLimits {
    /// For re-reading a CSV that was accepted earlier: a later change of the
    /// limits must not strand a request accepted under the old ones.
    pub fn unlimited() -> Self {
        CsvLimits { max_bytes: usize::MAX, max_rows: usize::MAX, max_images: usize::MAX }
    }
}

/// One thing the uploader must fix. `line` and `column` are 1-based, as a
/// spreadsheet or text editor shows them; `column` is the field's position in
/// the row. Either is `None` when the problem concerns the whole file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CsvProblem {
    pub line: Option<u64>,
    pub column: Option<u32>,
    pub message: String,
}

/// Why an upload was refused; both variants are the uploader's to fix.
#[derive(Debug, thiserror::Error)]
pub enum CsvRejection {
    #[error("the CSV is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the CSV has {} problem(s)", .0.len())]
    Invalid(Vec<CsvProblem>),
}

/// A data row that passed every rule. Text fields are trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRow {
    /// Physical line where the row starts (quoted cells may span lines).
    pub line: u64,
    pub serial: String,
    pub product_name: String,
    /// Kept as written so the output CSV echoes the uploader's own cell.
    pub urls_cell: String,
    pub urls: Vec<HttpUrl>,
}

/// An upload that passed every rule; holding one means nothing is left to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedCsv {
    rows: Vec<InputRow>,
}

/// Problems beyond this are counted, not listed: nobody reads thousands of
/// copies of the same mistake, and the response must stay small.
const MAX_LISTED_PROBLEMS: usize = 200;

/// Long values are shortened in messages so one bad cell cannot flood them.
const MAX_QUOTED_CHARS: usize = 100;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl ValidatedCsv {
    /// # Errors
    /// `TooLarge` when the upload exceeds `limits.max_bytes` (nothing else is
    /// looked at), otherwise `Invalid` with every problem found, in file order.
    pub fn parse(bytes: &[u8], limits: &CsvLimits) -> Result<ValidatedCsv, CsvRejection> {
        if bytes.len() > limits.max_bytes {
            return Err(CsvRejection::TooLarge { limit: limits.max_bytes });
        }
        let text = decode_text(bytes).map_err(|problem| CsvRejection::Invalid(vec![problem]))?;
        let mut problems = Problems::default();
        let rows = read_rows(text, limits, &mut problems);
        if problems.is_empty() { Ok(ValidatedCsv { rows }) } else { Err(CsvRejection::Invalid(problems.into_vec())) }
    }

    pub fn rows(&self) -> &[InputRow] {
        &self.rows
    }

    pub fn image_count(&self) -> usize {
        self.rows.iter().map(|row| row.urls.len()).sum()
    }

    /// Every image in output order: (global image index from 0, row index, &HttpUrl).
    ///
    /// The global index is the image's identity everywhere else in the
    /// service (job records, output slots), so it is derived in one place.
    pub fn images(&self) -> impl Iterator<Item = (usize, usize, &HttpUrl)> {
        self.rows
            .iter()
            .enumerate()
            .flat_map(|(row_index, row)| row.urls.iter().map(move |url| (row_index, url)))
            .enumerate()
            .map(|(image_index, (row_index, url))| (image_index, row_index, url))
    }
}

// ---------------------------------------------------------------------------
// Reading

/// Turns the upload into text, or explains in one problem why it is not text.
/// Binary files are recognised first: "invalid UTF-8 at line 1" would be a
/// confusing way to say "you uploaded a picture".
fn decode_text(bytes: &[u8]) -> Result<&str, CsvProblem> {
    if let Some(kind) = binary_kind(bytes) {
        return Err(file_problem(kind));
    }
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|error| {
        let line = LineCounter::new(bytes).line_at(error.valid_up_to());
        file_problem(format!("the file is not UTF-8 text (invalid byte at line {line}); save it as CSV UTF-8"))
    })
}

/// Names the kinds of file people upload by mistake, by their magic bytes.
fn binary_kind(bytes: &[u8]) -> Option<String> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xFF\xD8\xFF", "a JPEG image"),
        (b"GIF87a", "a GIF image"),
        (b"GIF89a", "a GIF image"),
        (b"%PDF-", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive, such as an Excel .xlsx workbook"),
        (b"PK\x05\x06", "a ZIP archive, such as an Excel .xlsx workbook"),
        (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", "an Excel .xls workbook"),
    ];
    if let Some((_, kind)) = SIGNATURES.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Some(format!("this is not a CSV file (it looks like {kind})"));
    }
    // Excel's "Unicode Text" export; checked before NUL bytes, which it is full of.
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Some("the file is UTF-16 text; save it as CSV UTF-8".to_owned());
    }
    if bytes.contains(&0) {
        return Some("this is not a CSV file (it contains NUL bytes)".to_owned());
    }
    None
}

/// Physical line numbers, counted here because `Position::line` from the
/// csv crate lags behind after a CRLF line end and after a blank line
/// (BurntSushi/rust-csv#395 and #208). A record's byte offset is reliable
/// once the leftover line end in front of it is skipped. CR, LF and CRLF each
/// end one line, as they do in the spreadsheets that produce these files.
struct LineCounter<'a> {
    text: &'a [u8],
    counted_to: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        LineCounter { text, counted_to: 0, line: 1 }
    }

    /// The line of the first character at or after `offset` that is not a
    /// line end. Offsets must not go backwards between calls.
    fn line_at(&mut self, offset: usize) -> u64 {
        let mut start = offset.clamp(self.counted_to, self.text.len());
        while let Some(b'\r' | b'\n') = self.text.get(start) {
            start += 1;
        }
        let text = self.text;
        let breaks = text[self.counted_to..start]
            .iter()
            .enumerate()
            .filter(|&(index, &byte)| match byte {
                b'\n' => true,
                b'\r' => text.get(self.counted_to + index + 1) != Some(&b'\n'),
                _ => false,
            })
            .count();
        self.line += breaks as u64;
        self.counted_to = start;
        self.line
    }

    fn line_of(&mut self, position: Option<&csv::Position>) -> u64 {
        match position {
            Some(position) => self.line_at(usize::try_from(position.byte()).unwrap_or(usize::MAX)),
            None => self.line,
        }
    }
}

/// Where each required column is in this file's header.
struct Columns {
    serial: usize,
    product_name: usize,
    urls: usize,
    width: usize,
}

struct RequiredColumn {
    /// How the column is named in messages.
    display: &'static str,
    /// Accepted spellings after [`normalise_header`].
    aliases: &'static [&'static str],
}

const SERIAL: RequiredColumn =
    RequiredColumn { display: "\"S. No.\" (or \"Serial Number\")", aliases: &["s.no.", "s.no", "serialnumber"] };
const PRODUCT_NAME: RequiredColumn = RequiredColumn { display: "\"Product Name\"", aliases: &["productname"] };
const INPUT_URLS: RequiredColumn = RequiredColumn { display: "\"Input Image Urls\"", aliases: &["inputimageurls"] };

/// Header spelling varies with whoever typed it ("S.No", "PRODUCT NAME"), so
/// only letters and punctuation count, not case or spacing.
fn normalise_header(name: &str) -> String {
    name.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

fn read_rows(text: &str, limits: &CsvLimits, problems: &mut Problems) -> Vec<InputRow> {
    // Flexible, header-less reading: field counts and header names are
    // checked here, with messages written for the uploader.
    let mut lines = LineCounter::new(text.as_bytes());
    let mut records = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .into_records()
        // Spreadsheets leave empty or whitespace-only rows behind (often
        // ",,,"); they carry no data, so they are not rows.
        .filter(|record| !matches!(record, Ok(record) if record.iter().all(|f| f.trim().is_empty())));

    let header = match records.next() {
        None => {
            problems.push(None, None, "the file is empty");
            return Vec::new();
        }
        Some(Err(error)) => {
            problems.push_read_error(&error, &mut lines);
            return Vec::new();
        }
        Some(Ok(header)) => header,
    };
    let header_line = lines.line_of(header.position());
    let Some(columns) = locate_columns(&header, header_line, problems) else {
        return Vec::new();
    };

    let mut rows = Vec::new();
    let mut seen_serials: HashMap<String, u64> = HashMap::new();
    let mut data_rows = 0_usize;
    let mut image_total = 0_usize;
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                problems.push_read_error(&error, &mut lines);
                break;
            }
        };
        let line = lines.line_of(record.position());
        data_rows += 1;
        if data_rows > limits.max_rows {
            problems.push(Some(line), None, format!("more than {} rows; split the file", limits.max_rows));
            break;
        }
        let checked = check_row(&record, line, &columns, &mut seen_serials, problems);
        let Some((row, url_count)) = checked else {
            continue;
        };
        let was_within_limit = image_total <= limits.max_images;
        image_total += url_count;
        if was_within_limit && image_total > limits.max_images {
            problems.push(
                Some(line),
                column_number(columns.urls),
                format!(
                    "this row takes the total number of image URLs over the limit of {}; split the file",
                    limits.max_images
                ),
            );
        }
        rows.extend(row);
    }
    if data_rows == 0 {
        problems.push(None, None, "the CSV has a header but no data rows");
    }
    rows
}

fn locate_columns(header: &StringRecord, line: u64, problems: &mut Problems) -> Option<Columns> {
    let line = Some(line);
    let names: Vec<String> = header.iter().map(normalise_header).collect();
    let found = header.iter().map(|name| format!("\"{}\"", shorten(name.trim()))).collect::<Vec<_>>().join(", ");

    let mut locate = |required: &RequiredColumn| -> Option<usize> {
        let positions: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, name)| required.aliases.contains(&name.as_str()))
            .map(|(index, _)| index)
            .collect();
        match positions.as_slice() {
            [] => {
                problems.push(line, None, format!("missing column {}; found columns: {found}", required.display));
                None
            }
            [only] => Some(*only),
            [first, duplicates @ ..] => {
                for &duplicate in duplicates {
                    problems.push(
                        line,
                        column_number(duplicate),
                        format!("column {} appears more than once (first in column {})", required.display, first + 1),
                    );
                }
                None
            }
        }
    };
    // All three are located before returning so every header problem is reported.
    let serial = locate(&SERIAL);
    let product_name = locate(&PRODUCT_NAME);
    let urls = locate(&INPUT_URLS);
    Some(Columns { serial: serial?, product_name: product_name?, urls: urls?, width: header.len() })
}

/// Checks one data row, reporting each problem in it. Returns the row when it
/// is clean, and the number of URLs it asks for either way, since the image
/// limit counts what was requested. `None` when the row's shape is wrong and
/// its cells cannot be trusted.
fn check_row(
    record: &StringRecord,
    line: u64,
    columns: &Columns,
    seen_serials: &mut HashMap<String, u64>,
    problems: &mut Problems,
) -> Option<(Option<InputRow>, usize)> {
    if record.len() != columns.width {
        let hint =
            if record.len() > columns.width { " (a cell that contains commas must be in double quotes)" } else { "" };
        problems.push(Some(line), None, format!("expected {} fields, found {}{hint}", columns.width, record.len()));
        return None;
    }
    let problems_before = problems.total();
    let cell = |index: usize| record.get(index).unwrap_or_default().trim();
    let at = |index: usize| (Some(line), column_number(index));

    let serial = cell(columns.serial);
    if serial.is_empty() {
        let (line, column) = at(columns.serial);
        problems.push(line, column, "the serial number is empty");
    } else if let Some(first_line) = seen_serials.get(serial) {
        let (line, column) = at(columns.serial);
        problems.push(
            line,
            column,
            format!("serial number \"{}\" is already used on line {first_line}", shorten(serial)),
        );
    } else {
        seen_serials.insert(serial.to_owned(), line);
    }

    let product_name = cell(columns.product_name);
    if product_name.is_empty() {
        let (line, column) = at(columns.product_name);
        problems.push(line, column, "the product name is empty");
    }

    let urls_cell = cell(columns.urls);
    // Empty pieces are skipped so that a trailing or doubled comma is harmless.
    let pieces: Vec<&str> = urls_cell.split(',').map(str::trim).filter(|piece| !piece.is_empty()).collect();
    let (url_line, url_column) = at(columns.urls);
    if pieces.is_empty() {
        problems.push(url_line, url_column, "no image URLs in this row");
    }
    let mut urls = Vec::with_capacity(pieces.len());
    for (index, piece) in pieces.iter().enumerate() {
        match HttpUrl::parse(piece) {
            Ok(url) => urls.push(url),
            Err(error) => problems.push(
                url_line,
                url_column,
                format!("URL {} of {} (\"{}\"): {error}", index + 1, pieces.len(), shorten(piece)),
            ),
        }
    }

    let row = (problems.total() == problems_before).then(|| InputRow {
        line,
        serial: serial.to_owned(),
        product_name: product_name.to_owned(),
        urls_cell: urls_cell.to_owned(),
        urls,
    });
    Some((row, pieces.len()))
}

fn column_number(index: usize) -> Option<u32> {
    u32::try_from(index + 1).ok()
}

fn shorten(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

fn file_problem(message: impl Into<String>) -> CsvProblem {
    CsvProblem { line: None, column: None, message: message.into() }
}

/// Collects problems up to [`MAX_LISTED_PROBLEMS`] and counts the rest.
#[derive(Default)]
struct Problems {
    listed: Vec<CsvProblem>,
    omitted: usize,
}

impl Problems {
    fn push(&mut self, line: Option<u64>, column: Option<u32>, message: impl Into<String>) {
        if self.listed.len() < MAX_LISTED_PROBLEMS {
            self.listed.push(CsvProblem { line, column, message: message.into() });
        } else {
            self.omitted += 1;
        }
    }

    /// The reader only fails on input it cannot tokenise at all; the text is
    /// already known to be UTF-8, so this is a safety net, not an expected path.
    fn push_read_error(&mut self, error: &csv::Error, lines: &mut LineCounter<'_>) {
        let line = lines.line_of(error.position());
        self.push(Some(line), None, format!("could not read the CSV: {error}"));
    }

    fn total(&self) -> usize {
        self.listed.len() + self.omitted
    }

    fn is_empty(&self) -> bool {
        self.total() == 0
    }

    fn into_vec(mut self) -> Vec<CsvProblem> {
        if self.omitted > 0 {
            self.listed.push(file_problem(format!(
                "{} more problem(s) not listed; fix the ones above and upload again",
                self.omitted
            )));
        }
        self.listed
    }
}

// ---------------------------------------------------------------------------
// Writing

pub const OUTPUT_HEADER: [&str; 4] = ["S. No.", "Product Name", "Input Image Urls", "Output Image Urls"];

/// Why the output CSV could not be written. Both are bugs in the caller or
/// this module, never the uploader's doing.
#[derive(Debug, thiserror::Error)]
pub enum OutputMismatch {
    #[error("expected {expected} output slots (one per input image), got {actual}")]
    SlotCount { expected: usize, actual: usize },
    /// Writing to memory cannot fail in practice; kept so that no path panics.
    #[error("could not write the output CSV")]
    Write(#[source] csv::Error),
}

/// `outputs` holds, per global image index (see [`ValidatedCsv::images`]),
/// the output URL or `None` for an image that failed. Each row gets exactly
/// one slot per input URL, so a failed image leaves an empty slot rather than
/// shifting the others out of line with their inputs.
///
/// # Errors
/// `SlotCount` when `outputs.len()` differs from [`ValidatedCsv::image_count`].
pub fn write_output_csv(csv: &ValidatedCsv, outputs: &[Option<String>]) -> Result<Vec<u8>, OutputMismatch> {
    let expected = csv.image_count();
    if outputs.len() != expected {
        return Err(OutputMismatch::SlotCount { expected, actual: outputs.len() });
    }
    // RFC 4180: CRLF line endings, quotes only where needed.
    let mut writer = WriterBuilder::new().terminator(Terminator::CRLF).from_writer(Vec::new());
    writer.write_record(OUTPUT_HEADER).map_err(OutputMismatch::Write)?;
    let mut slots = outputs.iter();
    for row in &csv.rows {
        let output_urls =
            slots.by_ref().take(row.urls.len()).map(|slot| slot.as_deref().unwrap_or("")).collect::<Vec<_>>().join(",");
        let cells = [row.serial.as_str(), row.product_name.as_str(), row.urls_cell.as_str(), output_urls.as_str()];
        writer
            .write_record(cells.map(neutralise_formula).iter().map(|cell| cell.as_bytes()))
            .map_err(OutputMismatch::Write)?;
    }
    writer.into_inner().map_err(|error| OutputMismatch::Write(csv::Error::from(error.into_error())))
}

/// Spreadsheets run a cell that starts with one of these as a formula (CSV
/// injection); a leading apostrophe makes them show it as text instead.
fn neutralise_formula(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
S. No.,Product Name,Input Image Urls
1,SKU1,\"https://img.example.com/1a.jpg,https://img.example.com/1b.jpg,https://img.example.com/1c.jpg\"
2,SKU2,\"https://img.example.com/2a.jpg, https://img.example.com/2b.jpg\"
";

    fn parse(text: &str) -> Result<ValidatedCsv, CsvRejection> {
        ValidatedCsv::parse(text.as_bytes(), &CsvLimits::default())
    }

    fn problems_of(result: Result<ValidatedCsv, CsvRejection>) -> Vec<CsvProblem> {
        match result {
            Err(CsvRejection::Invalid(problems)) => problems,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn only_problem(result: Result<ValidatedCsv, CsvRejection>) -> CsvProblem {
        let mut problems = problems_of(result);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        problems.remove(0)
    }

    fn problem(line: Option<u64>, column: Option<u32>, message: &str) -> CsvProblem {
        CsvProblem { line, column, message: message.to_owned() }
    }

    fn url_strings(row: &InputRow) -> Vec<&str> {
        row.urls.iter().map(HttpUrl::as_str).collect()
    }

    #[test]
    fn valid_sample_with_quoted_multi_url_cells_is_accepted() {
        let csv = parse(SAMPLE).expect("valid CSV");
        let rows = csv.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].serial, "1");
        assert_eq!(rows[0].product_name, "SKU1");
        assert_eq!(
            url_strings(&rows[0]),
            ["https://img.example.com/1a.jpg", "https://img.example.com/1b.jpg", "https://img.example.com/1c.jpg"]
        );
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].urls_cell, "https://img.example.com/2a.jpg, https://img.example.com/2b.jpg");
        assert_eq!(url_strings(&rows[1]).len(), 2);
        assert_eq!(csv.image_count(), 5);
    }

    #[test]
    fn images_are_numbered_globally_in_output_order() {
        let csv = parse(SAMPLE).expect("valid CSV");
        let images: Vec<(usize, usize, &str)> =
            csv.images().map(|(image, row, url)| (image, row, url.as_str())).collect();
        assert_eq!(images.len(), 5);
        assert_eq!(images[0], (0, 0, "https://img.example.com/1a.jpg"));
        assert_eq!(images[2], (2, 0, "https://img.example.com/1c.jpg"));
        assert_eq!(images[3], (3, 1, "https://img.example.com/2a.jpg"));
        assert_eq!(images[4], (4, 1, "https://img.example.com/2b.jpg"));
    }

    #[test]
    fn bom_and_crlf_are_accepted() {
        let text = format!("\u{FEFF}{}", SAMPLE.replace('\n', "\r\n"));
        let csv = parse(&text).expect("valid CSV");
        assert_eq!(csv.rows().len(), 2);
        assert_eq!(csv.rows()[1].line, 3);
        assert_eq!(csv.image_count(), 5);
    }

    #[test]
    fn trailing_blank_and_whitespace_only_lines_are_not_rows() {
        let text = format!("{SAMPLE}\n   \n,,\r\n\n");
        let csv = parse(&text).expect("valid CSV");
        assert_eq!(csv.rows().len(), 2);
    }

    #[test]
    fn trailing_comma_in_url_cell_is_ignored() {
        let text = "S. No.,Product Name,Input Image Urls\n1,SKU1,\"https://img.example.com/a.jpg,\"\n";
        let csv = parse(text).expect("valid CSV");
        assert_eq!(url_strings(&csv.rows()[0]), ["https://img.example.com/a.jpg"]);
        assert_eq!(csv.rows()[0].urls_cell, "https://img.example.com/a.jpg,");
    }

    #[test]
    fn serial_number_header_and_loose_spelling_are_accepted() {
        for header in [
            "Serial Number,Product Name,Input Image Urls",
            "SERIAL NUMBER,productname,inputimageurls",
            " S.No ,PRODUCT  NAME, Input Image URLs ",
            "s.no.,Product Name,Input Image Urls",
        ] {
            let text = format!("{header}\n1,SKU1,https://img.example.com/a.jpg\n");
            let csv = parse(&text).unwrap_or_else(|error| panic!("{header}: {error:?}"));
            assert_eq!(csv.rows()[0].serial, "1", "{header}");
        }
    }

    #[test]
    fn columns_are_found_by_name_and_extra_columns_ignored() {
        let text = "\
Input Image Urls,Notes,Product Name,S. No.
https://img.example.com/a.jpg,ignore me,SKU1,7
";
        let csv = parse(text).expect("valid CSV");
        let row = &csv.rows()[0];
        assert_eq!(row.serial, "7");
        assert_eq!(row.product_name, "SKU1");
        assert_eq!(url_strings(row), ["https://img.example.com/a.jpg"]);
    }

    #[test]
    fn missing_column_is_named_with_the_columns_found() {
        let text = "S. No.,Name,Input Image Urls\n1,SKU1,https://img.example.com/a.jpg\n";
        assert_eq!(
            only_problem(parse(text)),
            problem(
                Some(1),
                None,
                "missing column \"Product Name\"; found columns: \"S. No.\", \"Name\", \"Input Image Urls\""
            )
        );
    }

    #[test]
    fn duplicate_required_column_is_reported() {
        let text = "S. No.,Product Name,Serial Number,Input Image Urls\n1,SKU1,1,https://img.example.com/a.jpg\n";
        assert_eq!(
            only_problem(parse(text)),
            problem(
                Some(1),
                Some(3),
                "column \"S. No.\" (or \"Serial Number\") appears more than once (first in column 1)"
            )
        );
    }

    #[test]
    fn empty_file_is_reported() {
        for text in ["", "\u{FEFF}", "\n\r\n  \n"] {
            assert_eq!(only_problem(parse(text)), problem(None, None, "the file is empty"));
        }
    }

    #[test]
    fn wrong_field_count_is_reported_and_row_not_checked_further() {
        let text = "\
S. No.,Product Name,Input Image Urls
1,SKU1,https://img.example.com/a.jpg,https://img.example.com/b.jpg
2,,
";
        assert_eq!(
            problems_of(parse(text)),
            [
                problem(
                    Some(2),
                    None,
                    "expected 3 fields, found 4 (a cell that contains commas must be in double quotes)"
                ),
                problem(Some(3), Some(2), "the product name is empty"),
                problem(Some(3), Some(3), "no image URLs in this row"),
            ]
        );
        let short = "S. No.,Product Name,Input Image Urls\n1,SKU1\n";
        assert_eq!(only_problem(parse(short)), problem(Some(2), None, "expected 3 fields, found 2"));
    }

    #[test]
    fn empty_serial_is_reported() {
        let text = "S. No.,Product Name,Input Image Urls\n  ,SKU1,https://img.example.com/a.jpg\n";
        assert_eq!(only_problem(parse(text)), problem(Some(2), Some(1), "the serial number is empty"));
    }

    #[test]
    fn empty_product_name_is_reported() {
        let text = "S. No.,Product Name,Input Image Urls\n1,   ,https://img.example.com/a.jpg\n";
        assert_eq!(only_problem(parse(text)), problem(Some(2), Some(2), "the product name is empty"));
    }

    #[test]
    fn row_without_urls_is_reported() {
        let text = "S. No.,Product Name,Input Image Urls\n1,SKU1,\" , ,\"\n";
        assert_eq!(only_problem(parse(text)), problem(Some(2), Some(3), "no image URLs in this row"));
    }

    #[test]
    fn bad_url_scheme_is_reported_with_its_position() {
        let text = "\
S. No.,Product Name,Input Image Urls
1,SKU1,\"https://img.example.com/a.jpg,ftp://img.example.com/b.jpg,https://img.example.com/c.jpg\"
";
        assert_eq!(
            only_problem(parse(text)),
            problem(
                Some(2),
                Some(3),
                "URL 2 of 3 (\"ftp://img.example.com/b.jpg\"): scheme must be http or https, found ftp"
            )
        );
    }

    #[test]
    fn relative_url_is_reported() {
        let text = "S. No.,Product Name,Input Image Urls\n1,SKU1,images/a.jpg\n";
        assert_eq!(
            only_problem(parse(text)),
            problem(Some(2), Some(3), "URL 1 of 1 (\"images/a.jpg\"): not an absolute URL")
        );
    }

    #[test]
    fn long_url_is_shortened_in_the_message() {
        let long = format!("images/{}", "x".repeat(300));
        let text = format!("S. No.,Product Name,Input Image Urls\n1,SKU1,{long}\n");
        let message = only_problem(parse(&text)).message;
        let expected = format!("URL 1 of 1 (\"{}…\"): not an absolute URL", &long[..100]);
        assert_eq!(message, expected);
    }

    #[test]
    fn duplicate_serial_names_the_earlier_line() {
        let text = "\
S. No.,Product Name,Input Image Urls
1,SKU1,https://img.example.com/a.jpg
2,SKU2,https://img.example.com/b.jpg
 1 ,SKU3,https://img.example.com/c.jpg
";
        assert_eq!(
            only_problem(parse(text)),
            problem(Some(4), Some(1), "serial number \"1\" is already used on line 2")
        );
    }

    #[test]
    fn header_without_data_rows_is_reported() {
        let text = "S. No.,Product Name,Input Image Urls\r\n\r\n";
        assert_eq!(only_problem(parse(text)), problem(None, None, "the CSV has a header but no data rows"));
    }

    #[test]
    fn latin1_file_is_reported_as_not_utf8_with_the_line() {
        let mut bytes = b"S. No.,Product Name,Input Image Urls\n1,Caf".to_vec();
        bytes.push(0xE9); // "é" in Latin-1
        bytes.extend_from_slice(b",https://img.example.com/a.jpg\n");
        let result = ValidatedCsv::parse(&bytes, &CsvLimits::default());
        assert_eq!(
            only_problem(result),
            problem(None, None, "the file is not UTF-8 text (invalid byte at line 2); save it as CSV UTF-8")
        );
    }

    #[test]
    fn png_bytes_are_reported_as_not_a_csv() {
        let bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";
        let result = ValidatedCsv::parse(bytes, &CsvLimits::default());
        assert_eq!(only_problem(result), problem(None, None, "this is not a CSV file (it looks like a PNG image)"));
    }

    #[test]
    fn other_binary_files_are_reported_as_not_a_csv() {
        let cases: [(&[u8], &str); 4] = [
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", "this is not a CSV file (it looks like a JPEG image)"),
            (
                b"PK\x03\x04\x14\0\x06\0",
                "this is not a CSV file (it looks like a ZIP archive, such as an Excel .xlsx workbook)",
            ),
            (b"S. No.,Product\0 Name", "this is not a CSV file (it contains NUL bytes)"),
            (b"\xFF\xFES\0.\0", "the file is UTF-16 text; save it as CSV UTF-8"),
        ];
        for (bytes, message) in cases {
            let result = ValidatedCsv::parse(bytes, &CsvLimits::default());
            assert_eq!(only_problem(result), problem(None, None, message));
        }
    }

    #[test]
    fn too_large_file_is_rejected_before_anything_else() {
        let limits = CsvLimits { max_bytes: 10, ..CsvLimits::default() };
        // Binary content too: size is checked before the content is looked at.
        for bytes in [SAMPLE.as_bytes(), b"\x89PNG\r\n\x1a\n\0\0\0\0"] {
            let result = ValidatedCsv::parse(bytes, &limits);
            assert!(matches!(result, Err(CsvRejection::TooLarge { limit: 10 })), "{result:?}");
        }
        let exact = CsvLimits { max_bytes: SAMPLE.len(), ..CsvLimits::default() };
        assert!(ValidatedCsv::parse(SAMPLE.as_bytes(), &exact).is_ok());
    }

    #[test]
    fn too_many_rows_stops_at_the_first_line_beyond_the_limit() {
        let limits = CsvLimits { max_rows: 2, ..CsvLimits::default() };
        let text = "\
S. No.,Product Name,Input Image Urls
1,SKU1,https://img.example.com/a.jpg
2,SKU2,https://img.example.com/b.jpg
3,SKU3,https://img.example.com/c.jpg
4,,not-checked
";
        let result = ValidatedCsv::parse(text.as_bytes(), &limits);
        assert_eq!(only_problem(result), problem(Some(4), None, "more than 2 rows; split the file"));
    }

    #[test]
    fn unlimited_limits_accept_what_the_defaults_refuse() {
        let mut text = String::from("S. No.,Product Name,Input Image Urls\n");
        for serial in 1..=10_001 {
            text.push_str(&format!("{serial},SKU,https://img.example.com/{serial}.jpg\n"));
        }
        assert!(parse(&text).is_err());
        let csv = ValidatedCsv::parse(text.as_bytes(), &CsvLimits::unlimited()).expect("valid CSV");
        assert_eq!(csv.image_count(), 10_001);
    }

    #[test]
    fn too_many_images_is_reported_once() {
        let limits = CsvLimits { max_images: 3, ..CsvLimits::default() };
        let text = "\
S. No.,Product Name,Input Image Urls
1,SKU1,\"https://img.example.com/a.jpg,https://img.example.com/b.jpg\"
2,SKU2,\"https://img.example.com/c.jpg,https://img.example.com/d.jpg\"
3,SKU3,https://img.example.com/e.jpg
";
        let result = ValidatedCsv::parse(text.as_bytes(), &limits);
        assert_eq!(
            only_problem(result),
            problem(
                Some(3),
                Some(3),
                "this row takes the total number of image URLs over the limit of 3; split the file"
            )
        );
        let exact = CsvLimits { max_images: 5, ..CsvLimits::default() };
        assert!(ValidatedCsv::parse(text.as_bytes(), &exact).is_ok());
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_column() {
        let text = "\
Product Name,S. No.,Input Image Urls
SKU1,1,https://img.example.com/a.jpg
,2,\"https://img.example.com/b.jpg,/c.jpg\"
SKU3,,mailto:someone@example.com
SKU4,1,
SKU5,5,https://img.example.com/e.jpg,extra
";
        assert_eq!(
            problems_of(parse(text)),
            [
                problem(Some(3), Some(1), "the product name is empty"),
                problem(Some(3), Some(3), "URL 2 of 2 (\"/c.jpg\"): not an absolute URL"),
                problem(Some(4), Some(2), "the serial number is empty"),
                problem(
                    Some(4),
                    Some(3),
                    "URL 1 of 1 (\"mailto:someone@example.com\"): scheme must be http or https, found mailto"
                ),
                problem(Some(5), Some(2), "serial number \"1\" is already used on line 2"),
                problem(Some(5), Some(3), "no image URLs in this row"),
                problem(
                    Some(6),
                    None,
                    "expected 3 fields, found 4 (a cell that contains commas must be in double quotes)"
                ),
            ]
        );
    }

    #[test]
    fn problems_beyond_the_cap_are_counted_in_a_final_problem() {
        let mut text = String::from("S. No.,Product Name,Input Image Urls\n");
        for serial in 1..=250 {
            text.push_str(&format!("{serial},,https://img.example.com/a.jpg\n"));
        }
        let problems = problems_of(parse(&text));
        assert_eq!(problems.len(), MAX_LISTED_PROBLEMS + 1);
        assert_eq!(problems[199], problem(Some(201), Some(2), "the product name is empty"));
        assert_eq!(
            problems[200],
            problem(None, None, "50 more problem(s) not listed; fix the ones above and upload again")
        );
    }

    #[test]
    fn line_numbers_are_physical_lines_with_any_line_ending() {
        // Line 2 is empty and line 5 holds only spaces (escaped so editors keep it).
        let lf = "\
S. No.,Product Name,Input Image Urls\n\
\n\
1,SKU1,https://img.example.com/a.jpg\n\
\n\
\x20  \n\
2,,https://img.example.com/b.jpg\n\
3,SKU3,https://img.example.com/c.jpg\n";
        for line_end in ["\n", "\r\n", "\r"] {
            let text = lf.replace('\n', line_end);
            assert_eq!(
                only_problem(parse(&text)),
                problem(Some(6), Some(2), "the product name is empty"),
                "line end {line_end:?}"
            );
            let csv = parse(&text.replace("2,,", "2,SKU2,")).expect("valid CSV");
            let lines: Vec<u64> = csv.rows().iter().map(|row| row.line).collect();
            assert_eq!(lines, [3, 6, 7], "line end {line_end:?}");
        }
    }

    #[test]
    fn multi_line_quoted_cell_keeps_line_numbers_right() {
        let text = "\
S. No.,Product Name,Input Image Urls
1,\"Shirt
(blue)\",\"https://img.example.com/a.jpg,
https://img.example.com/b.jpg\"
2,,https://img.example.com/c.jpg
";
        assert_eq!(only_problem(parse(text)), problem(Some(5), Some(2), "the product name is empty"));
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(only_problem(parse(&crlf)), problem(Some(5), Some(2), "the product name is empty"));
        let fixed = text.replace("2,,", "2,Hat,");
        let csv = parse(&fixed).expect("valid CSV");
        assert_eq!(csv.rows()[0].line, 2);
        assert_eq!(csv.rows()[0].product_name, "Shirt\n(blue)");
        assert_eq!(csv.rows()[0].urls.len(), 2);
        assert_eq!(csv.rows()[1].line, 5);
    }

    fn read_back(bytes: &[u8]) -> Vec<Vec<String>> {
        ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes)
            .records()
            .map(|record| record.expect("output is valid CSV").iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn output_csv_round_trips_with_one_slot_per_input_url() {
        let csv = parse(SAMPLE).expect("valid CSV");
        let outputs = [
            Some("https://out.example.com/0.jpg".to_owned()),
            None,
            Some("https://out.example.com/2.jpg".to_owned()),
            None,
            None,
        ];
        let bytes = write_output_csv(&csv, &outputs).expect("written");
        assert!(bytes.ends_with(b"\r\n") && !bytes.ends_with(b"\r\n\r\n"));
        let records = read_back(&bytes);
        assert_eq!(
            records,
            [
                OUTPUT_HEADER.map(str::to_owned).to_vec(),
                vec![
                    "1".to_owned(),
                    "SKU1".to_owned(),
                    csv.rows()[0].urls_cell.clone(),
                    "https://out.example.com/0.jpg,,https://out.example.com/2.jpg".to_owned(),
                ],
                vec![
                    "2".to_owned(),
                    "SKU2".to_owned(),
                    "https://img.example.com/2a.jpg, https://img.example.com/2b.jpg".to_owned(),
                    ",".to_owned(),
                ],
            ]
        );
    }

    #[test]
    fn output_with_wrong_slot_count_is_an_error_not_a_panic() {
        let csv = parse(SAMPLE).expect("valid CSV");
        for outputs in [vec![None; 4], vec![None; 6]] {
            let result = write_output_csv(&csv, &outputs);
            assert!(
                matches!(result, Err(OutputMismatch::SlotCount { expected: 5, actual }) if actual == outputs.len()),
                "{result:?}"
            );
        }
    }

    #[test]
    fn output_cells_that_look_like_formulas_are_neutralised() {
        let text = "\
S. No.,Product Name,Input Image Urls
-1,\"=HYPERLINK(\"\"https://evil.example.com\"\",\"\"click\"\")\",https://img.example.com/a.jpg
2,@SUM(A1),https://img.example.com/b.jpg
3,+cmd,https://img.example.com/c.jpg
";
        let csv = parse(text).expect("valid CSV");
        let outputs = [Some("https://out.example.com/0.jpg".to_owned()), None, None];
        let records = read_back(&write_output_csv(&csv, &outputs).expect("written"));
        assert_eq!(records[1][0], "'-1");
        assert_eq!(records[1][1], "'=HYPERLINK(\"https://evil.example.com\",\"click\")");
        assert_eq!(records[1][2], "https://img.example.com/a.jpg");
        assert_eq!(records[2][1], "'@SUM(A1)");
        assert_eq!(records[3][1], "'+cmd");
        assert_eq!(neutralise_formula("\tx"), "'\tx");
        assert_eq!(neutralise_formula("\rx"), "'\rx");
        assert_eq!(neutralise_formula("SKU1"), "SKU1");
    }
}
