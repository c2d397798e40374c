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
    let images: Vec<(usize, usize, &str)> = csv.images().map(|(image, row, url)| (image, row, url.as_str())).collect();
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
            problem(Some(2), None, "expected 3 fields, found 4 (a cell that contains commas must be in double quotes)"),
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
    assert_eq!(only_problem(parse(text)), problem(Some(4), Some(1), "serial number \"1\" is already used on line 2"));
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
        problem(Some(3), Some(3), "this row takes the total number of image URLs over the limit of 3; split the file")
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
            problem(Some(6), None, "expected 3 fields, found 4 (a cell that contains commas must be in double quotes)"),
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

#[test]
fn errors_report_names_each_failed_image_by_row_and_position() {
    let csv = ValidatedCsv::parse(
        b"S. No.,Product Name,Input Image Urls\n1,=Shirt,\"https://a.example/1.jpg,https://a.example/2.jpg\"\n2,Shoe,https://a.example/3.jpg\n",
        &CsvLimits::default(),
    )
    .unwrap();
    let report =
        write_errors_csv(&csv, &[(1, "http_status_404", "the server answered HTTP 404"), (2, "not_an_image", "-")])
            .unwrap();

    let mut reader = csv::Reader::from_reader(report.as_slice());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), ERRORS_HEADER);
    let records: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    assert_eq!(
        records[0],
        ["1", "'=Shirt", "2", "https://a.example/2.jpg", "http_status_404", "the server answered HTTP 404"]
    );
    assert_eq!(records[1], ["2", "Shoe", "1", "https://a.example/3.jpg", "not_an_image", "'-"]);
}

#[test]
fn a_url_with_a_password_is_quoted_without_it() {
    let csv = "S. No.,Product Name,Input Image Urls\n1,Shirt,https://bob:hunter2@img.example/a.jpg\n";
    let Err(CsvRejection::Invalid(problems)) = ValidatedCsv::parse(csv.as_bytes(), &CsvLimits::default()) else {
        panic!("credentials must be refused");
    };
    assert!(
        !problems[0].message.contains("hunter2") && !problems[0].message.contains("bob"),
        "{}",
        problems[0].message
    );
    assert!(problems[0].message.contains("***@img.example"), "{}", problems[0].message);
}

/// An absolute URL of exactly `length` characters.
fn url_of_length(length: usize) -> String {
    let base = "https://img.example.com/";
    format!("{base}{}", "a".repeat(length - base.len()))
}

#[test]
fn a_url_at_the_length_limit_is_accepted_and_one_over_it_refused() {
    let at_limit = url_of_length(2048);
    let text = format!("S. No.,Product Name,Input Image Urls\n1,SKU1,{at_limit}\n");
    let csv = parse(&text).expect("a URL of 2048 characters is accepted");
    assert_eq!(url_strings(&csv.rows()[0]), [at_limit.as_str()]);

    let over = url_of_length(2049);
    let text = format!(
        "S. No.,Product Name,Input Image Urls\n1,SKU1,\"https://img.example.com/a.jpg, {over}\"\n2,SKU2,{at_limit}\n"
    );
    assert_eq!(
        only_problem(parse(&text)),
        problem(
            Some(2),
            Some(3),
            &format!(
                "URL 2 of 2 (\"{}…\"): the URL is 2049 characters long, more than the limit of 2048",
                &over[..100]
            )
        )
    );
}

#[test]
fn the_url_length_is_counted_as_the_url_is_stored() {
    // Non-ASCII is percent-encoded: "é" is stored as "%C3%A9", six characters.
    let base = "https://img.example.com/";
    let written = format!("{base}{}", "é".repeat((2048 - base.len()) / 6 + 1));
    assert!(written.chars().count() < 2048);
    let text = format!("S. No.,Product Name,Input Image Urls\n1,SKU1,{written}\n");
    let message = only_problem(parse(&text)).message;
    assert!(message.ends_with("more than the limit of 2048"), "{message}");
}

#[test]
fn urls_separated_by_semicolons_spaces_or_line_breaks_are_refused() {
    let cases = [
        ("https://img.example.com/a.jpg;https://img.example.com/b.jpg", "semicolons"),
        ("https://img.example.com/a.jpg; https://img.example.com/b.jpg", "semicolons"),
        ("https://img.example.com/a.jpg https://img.example.com/b.jpg", "spaces"),
        ("https://img.example.com/a.jpg\thttps://img.example.com/b.jpg", "spaces"),
        ("https://img.example.com/a.jpg\nhttps://img.example.com/b.jpg", "line breaks"),
        ("https://img.example.com/a.jpg\r\nhttps://img.example.com/b.jpg", "line breaks"),
    ];
    for (cell, separator) in cases {
        let text = format!("S. No.,Product Name,Input Image Urls\n1,SKU1,\"{cell}\"\n");
        assert_eq!(
            only_problem(parse(&text)),
            problem(
                Some(2),
                Some(3),
                &format!(
                    "URL 1 of 1 (\"{cell}\"): this holds 2 URLs separated by {separator}; separate URLs with \
                     commas, and put the cell in double quotes"
                )
            ),
            "{cell:?}"
        );
    }
    // Counted per comma-separated piece: the second piece is the one at fault.
    let text = "S. No.,Product Name,Input Image Urls\n\
        1,SKU1,\"https://img.example.com/a.jpg, http://img.example.com/b.jpg http://img.example.com/c.jpg;HTTPS://img.example.com/d.jpg\"\n";
    let message = only_problem(parse(text)).message;
    assert!(message.starts_with("URL 2 of 2 (\"http://img.example.com/b.jpg "), "{message}");
    assert!(message.contains("this holds 3 URLs separated by semicolons and spaces;"), "{message}");
}

#[test]
fn semicolons_and_spaces_inside_one_url_are_kept() {
    for url in [
        "https://img.example.com/a.jpg;jsessionid=0A1B2C",
        "https://img.example.com/a;v=2/b.jpg?w=200;h=100",
        "https://img.example.com/proxy?a=1;u=https://cdn.example.com/b.jpg",
        "https://img.example.com/redirect?to=https://cdn.example.com/b.jpg",
    ] {
        let text = format!("S. No.,Product Name,Input Image Urls\n1,SKU1,\"{url}\"\n");
        let csv = parse(&text).unwrap_or_else(|error| panic!("{url}: {error:?}"));
        assert_eq!(url_strings(&csv.rows()[0]), [url]);
    }
    // A space inside one URL, not between two: kept as one URL, percent-encoded.
    let text = "S. No.,Product Name,Input Image Urls\n1,SKU1,https://img.example.com/my photo.jpg\n";
    let csv = parse(text).expect("one URL with a space");
    assert_eq!(url_strings(&csv.rows()[0]), ["https://img.example.com/my%20photo.jpg"]);
}
