//! `imgpipe download`: the output CSV, and with `--images` every output image, fetched a few at a
//! time with a progress bar, each named by its row and its position in the row
//! (`row0002-1.jpg` is the first image of data row 2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::answers::Image;
use crate::client::Api;
use crate::errors::CliError;
use crate::wait::Display;

/// Downloads in flight at once: enough to hide S3's latency, few enough for a laptop's uplink.
const CONCURRENT_DOWNLOADS: usize = 8;

/// Each image's file name, in output order: `row<row, 4 digits>-<position in the row, from 1>.jpg`.
pub fn file_names(images: &[Image]) -> Vec<(u32, String)> {
    let mut positions: HashMap<u32, u32> = HashMap::new();
    let mut ordered: Vec<&Image> = images.iter().collect();
    ordered.sort_by_key(|image| image.image_index);
    ordered
        .into_iter()
        .map(|image| {
            let position = positions.entry(image.row).or_insert(0);
            *position += 1;
            (image.image_index, format!("row{:04}-{position}.jpg", image.row))
        })
        .collect()
}

/// The output CSV's path when `-o` is not given.
pub fn default_output_csv(request_id: &str) -> PathBuf {
    PathBuf::from(format!("{request_id}.output.csv"))
}

pub async fn save_output_csv(api: &Api, request_id: &str, path: &Path) -> Result<(), CliError> {
    let bytes = api.download(&format!("/api/requests/{request_id}/output.csv")).await?;
    write(path, &bytes)
}

/// Every DONE image into `dir`; returns how many were saved and how many had no output.
pub async fn save_images(api: &Api, images: &[Image], dir: &Path, display: Display) -> Result<(u64, u64), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|error| CliError::File(format!("cannot create the directory {}: {error}", dir.display())))?;
    let names: HashMap<u32, String> = file_names(images).into_iter().collect();
    let done: Vec<&Image> = images.iter().filter(|image| image.output_url.is_some()).collect();
    let skipped = (images.len() - done.len()) as u64;
    let bar = match display {
        Display::Bar => ProgressBar::with_draw_target(Some(done.len() as u64), ProgressDrawTarget::stderr()),
        Display::Lines => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} images | {per_sec}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut saved = 0;
    let mut downloads = futures::stream::iter(done.into_iter().map(|image| {
        let path = dir.join(&names[&image.image_index]);
        async move {
            let url = image.output_url.as_deref().expect("only images with an output");
            let bytes = api.download(url).await?;
            write(&path, &bytes)?;
            Ok::<(), CliError>(())
        }
    }))
    .buffer_unordered(CONCURRENT_DOWNLOADS);
    while let Some(result) = downloads.next().await {
        result?;
        saved += 1;
        bar.inc(1);
    }
    bar.finish();
    Ok((saved, skipped))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, bytes).map_err(|error| CliError::File(format!("cannot write {}: {error}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(index: u32, row: u32) -> Image {
        Image {
            image_index: index,
            row,
            input_url: String::new(),
            state: "DONE".into(),
            output_url: None,
            error_code: None,
            error_message: None,
            bytes_in: None,
            bytes_out: None,
        }
    }

    #[test]
    fn images_are_named_by_row_and_position_in_the_row() {
        let images = vec![image(2, 2), image(0, 1), image(1, 2), image(3, 3), image(4, 12345)];
        assert_eq!(
            file_names(&images),
            [
                (0, "row0001-1.jpg".to_string()),
                (1, "row0002-1.jpg".to_string()),
                (2, "row0002-2.jpg".to_string()),
                (3, "row0003-1.jpg".to_string()),
                (4, "row12345-1.jpg".to_string()),
            ]
        );
    }
}
