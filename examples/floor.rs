//! The floor of the benchmark table: the leanest S3 client we can write, no archive, no
//! checks. `floor up <file> <key>` is a multipart upload with 4 parts in flight, each part
//! streamed from its file range (unsigned payload, no checksums); `floor down <key> <file>`
//! is 4 ranged GETs in flight written in place with positioned writes.
//! Reads `FLOOR_ENDPOINT`, `FLOOR_BUCKET`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};

const PART: u64 = 16 << 20;
const IN_FLIGHT: usize = 4;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(env("FLOOR_ENDPOINT")?)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .credentials_provider(Credentials::new(
            env("AWS_ACCESS_KEY_ID")?,
            env("AWS_SECRET_ACCESS_KEY")?,
            None,
            None,
            "floor",
        ))
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    let bucket = env("FLOOR_BUCKET")?;
    match args.as_slice() {
        [cmd, file, key] if cmd == "up" => up(&client, &bucket, file, key).await,
        [cmd, key, file] if cmd == "down" => down(&client, &bucket, key, file).await,
        _ => Err("usage: floor up <file> <key> | floor down <key> <file>".into()),
    }
}

async fn up(client: &aws_sdk_s3::Client, bucket: &str, file: &str, key: &str) -> Result<(), Error> {
    let size = std::fs::metadata(file)?.len();
    let id = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await?;
    let id = id.upload_id().ok_or("no upload id")?.to_string();
    let parts: Vec<CompletedPart> = futures::stream::iter(0..size.div_ceil(PART))
        .map(|i| {
            let (id, file) = (id.clone(), file.to_string());
            async move {
                let len = PART.min(size - i * PART);
                let body = ByteStream::read_from()
                    .path(&file)
                    .offset(i * PART)
                    .length(Length::Exact(len))
                    .build()
                    .await?;
                let out = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&id)
                    .part_number(i as i32 + 1)
                    .body(body)
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await?;
                Ok::<_, Error>(
                    CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                )
            }
        })
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

async fn down(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    file: &str,
) -> Result<(), Error> {
    let size = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await?
        .content_length()
        .unwrap_or(0) as u64;
    let out = Arc::new(std::fs::File::create(file)?);
    out.set_len(size)?;
    futures::stream::iter(0..size.div_ceil(PART))
        .map(|i| {
            let out = Arc::clone(&out);
            async move {
                let end = ((i + 1) * PART).min(size) - 1;
                let mut body = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .range(format!("bytes={}-{end}", i * PART))
                    .send()
                    .await?
                    .body;
                let mut at = i * PART;
                while let Some(chunk) = body.try_next().await? {
                    out.write_all_at(&chunk, at)?;
                    at += chunk.len() as u64;
                }
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
