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

use crate::domain::http_url::HttpUrl;

/// Upper bounds that keep one request within what a single run can process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvLimits {
    pub max_bytes: usize,
    pub max_rows: usize,
    pub max_images: usize,
    /// Longest image URL, and webhook URL, in characters as stored (see
    /// [`HttpUrl::parse_at_most`]); at most [`MAX_URL_LENGTH_CEILING`].
    pub max_url_length: usize,
}

/// The most `max_url_length` may be set to. Each URL is written whole into DynamoDB items
/// (an image's result, the request's webhook) and SQS messages (an image's job): at this
/// length the largest item is under 10 KB of DynamoDB's 400 KB, and a batch of ten jobs of 99
/// images each under 210 KB of SendMessageBatch's 256 KiB even if JSON escaped every character
/// (docs/api.md, "Limits", has the arithmetic; `adapters::aws::dynamo::item_size` and
/// `domain::fetch_jobs` test it).
pub const MAX_URL_LENGTH_CEILING: usize = 8192;

/// The inline upload's size limit. API Gateway's HTTP API base64-encodes a multipart body for
/// Lambda, whose synchronous invocation payload is at most 6 MB (6,291,456 bytes): 4 MiB of CSV
/// becomes 5,592,408 bytes, which leaves 699,048 for the multipart framing, the other form
/// fields and the event's JSON (headers, request context). Larger CSVs go through the bucket
/// (`POST /api/uploads`).
pub const INLINE_MAX_BYTES: usize = 4 * 1024 * 1024;

impl Default for CsvLimits {
    /// An inline upload's limits (`POST /api/upload/`).
    fn default() -> Self {
        CsvLimits { max_bytes: INLINE_MAX_BYTES, max_rows: 10_000, max_images: 10_000, max_url_length: 2048 }
    }
}

impl CsvLimits {
    /// The limits of a CSV that arrives through the bucket (a reserved upload, or a dropped
    /// file): 100 MiB, 100,000 rows and images. The fan-out of such a request is split into
    /// chunks (`domain::fan_out_chunks`); no item holds per-image lists, so no DynamoDB item
    /// grows with it.
    pub fn bucket() -> Self {
        CsvLimits { max_bytes: 100 * 1024 * 1024, max_rows: 100_000, max_images: 100_000, max_url_length: 2048 }
    }

    /// For re-reading a CSV that was accepted earlier: a later change of the
    /// limits must not strand a request accepted under the old ones.
    pub fn unlimited() -> Self {
        CsvLimits { max_bytes: usize::MAX, max_rows: usize::MAX, max_images: usize::MAX, max_url_length: usize::MAX }
    }
}

/// One thing the uploader must fix. `line` and `column` are 1-based, as a
/// spreadsheet or text editor shows them; `column` is the field's position in
/// the row. Either is `None` when the problem concerns the whole file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
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
        let checked = check_row(&record, line, &columns, limits, &mut seen_serials, problems);
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
    limits: &CsvLimits,
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
        let checked = match run_together_urls(piece) {
            Some(several) => Err(several.to_string()),
            None => HttpUrl::parse_at_most(piece, limits.max_url_length).map_err(|error| error.to_string()),
        };
        match checked {
            Ok(url) => urls.push(url),
            Err(problem) => problems.push(
                url_line,
                url_column,
                format!("URL {} of {} (\"{}\"): {problem}", index + 1, pieces.len(), shorten(&without_password(piece))),
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

/// Several URLs in one comma-separated piece, written with another separator: the piece then
/// parses as one URL (whitespace is percent-encoded or dropped, `;` is legal in a path) that
/// fails only when it is fetched.
#[derive(Debug)]
struct RunTogetherUrls {
    count: usize,
    /// "semicolons", "spaces", "line breaks", or two or three of them.
    separators: String,
}

impl std::fmt::Display for RunTogetherUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this holds {} URLs separated by {}; separate URLs with commas, and put the cell in double quotes",
            self.count, self.separators
        )
    }
}

/// The rule: split on `;` and whitespace (spaces, tabs, line breaks); when two or more of the
/// parts start with `http://` or `https://` and are each a valid image URL, the piece is
/// several URLs. A `;` inside one URL (`a.jpg;v=2`, `?a=1;b=2`) leaves at most one such part,
/// so a single URL is never refused by this rule. What lies between two of those parts names
/// the separator: a `;` makes it semicolons, else a line break line breaks, else spaces.
fn run_together_urls(piece: &str) -> Option<RunTogetherUrls> {
    let is_separator = |c: char| c == ';' || c.is_whitespace();
    let is_url = |part: &str| {
        let scheme = part.get(..8).unwrap_or(part).to_ascii_lowercase();
        (scheme.starts_with("http://") || scheme.starts_with("https://")) && HttpUrl::parse(part).is_ok()
    };
    // Byte ranges of the parts that are URLs, in order.
    let mut urls: Vec<(usize, usize)> = Vec::new();
    let mut offset = 0;
    for chunk in piece.split_inclusive(is_separator) {
        let part = chunk.strip_suffix(is_separator).unwrap_or(chunk);
        if is_url(part) {
            urls.push((offset, offset + part.len()));
        }
        offset += chunk.len();
    }
    if urls.len() < 2 {
        return None;
    }
    let mut used = [false; 3];
    for pair in urls.windows(2) {
        let between = &piece[pair[0].1..pair[1].0];
        let kind = if between.contains(';') {
            0
        } else if between.contains(['\r', '\n']) {
            2
        } else {
            1
        };
        used[kind] = true;
    }
    let names: Vec<&str> = ["semicolons", "spaces", "line breaks"]
        .into_iter()
        .zip(used)
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
    let separators = match names.split_last()? {
        (last, []) => (*last).to_owned(),
        (last, first) => format!("{} and {last}", first.join(", ")),
    };
    Some(RunTogetherUrls { count: urls.len(), separators })
}

fn column_number(index: usize) -> Option<u32> {
    u32::try_from(index + 1).ok()
}

/// Quoting a URL back must not echo a password: its user info becomes `***`.
fn without_password(piece: &str) -> Cow<'_, str> {
    match url::Url::parse(piece) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            Cow::Owned(url.to_string())
        }
        _ => Cow::Borrowed(piece),
    }
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

/// Header of the errors report written beside the output CSV when images failed.
pub const ERRORS_HEADER: [&str; 6] =
    ["S. No.", "Product Name", "Image Number", "Input Image Url", "Error Code", "Error Message"];

/// The errors report: one record per failed image, in output order, naming its row (by
/// serial number and product), its position among the row's URLs (1-based), and why it
/// failed, with the same stable codes as the status. `failures` holds (image index, code,
/// message); indexes beyond the CSV are skipped.
pub fn write_errors_csv(csv: &ValidatedCsv, failures: &[(u32, &str, &str)]) -> Result<Vec<u8>, OutputMismatch> {
    let positions: Vec<(&InputRow, usize, &HttpUrl)> =
        csv.rows.iter().flat_map(|row| row.urls.iter().enumerate().map(move |(slot, url)| (row, slot, url))).collect();
    let mut writer = WriterBuilder::new().terminator(Terminator::CRLF).from_writer(Vec::new());
    writer.write_record(ERRORS_HEADER).map_err(OutputMismatch::Write)?;
    for (index, code, message) in failures {
        let Some((row, slot, url)) = positions.get(*index as usize) else { continue };
        let number = (slot + 1).to_string();
        let cells = [row.serial.as_str(), row.product_name.as_str(), &number, url.as_str(), code, message];
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
mod tests;
