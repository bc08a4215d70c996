//! `--incoming N`: what listing the images shared with us (`incoming:`) costs with N
//! images offered to the project (a third per member status, half from a trusted
//! owner): requests and exporter CPU per listing, and the memory the offers take, with
//! the listings back to back (`incoming.interval: 1s`) and member polls out of the way.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::args::{Args, Scenario, PAGE_SIZE};
use crate::fleet::{PROJECT, TRUSTED_OWNER};
use crate::report::mib;
use crate::run::Run;
use crate::scrape::{sum_samples, Variant};

/// Listings measured once the offers are listed.
const LISTINGS: u64 = 10;

fn offered(i: usize) -> String {
    format!("0ffe0000-0000-4000-8000-{i:012x}")
}

/// What `--incoming` measured.
struct Figures {
    requests: f64,
    cpu: f64,
    rss_before: u64,
    rss_after: u64,
}

pub(crate) async fn incoming(
    args: &Args,
    s: &Scenario,
    bin: &Path,
    offers: usize,
) -> Result<(), String> {
    let mut run = Run::start(args, s, bin).await?;
    let result = measure(&mut run, offers).await;
    run.stop().await;
    let f = result?;
    println!();
    println!(
        "| incoming: {offers} images offered to one target, API latency {:?} | per listing |",
        args.latency
    );
    println!("|---|---|");
    println!(
        "| API requests (one listing per status, pages of {PAGE_SIZE}) | {:.1} |",
        f.requests
    );
    println!("| exporter CPU | {:.1} ms |", f.cpu * 1e3);
    println!(
        "| exporter RSS without offers → with them | {} → {} |",
        mib(f.rss_before),
        mib(f.rss_after)
    );
    Ok(())
}

async fn measure(run: &mut Run, offers: usize) -> Result<Figures, String> {
    // A first listing with nothing offered: the memory before.
    wait_listed(run, 0.0, true).await?;
    let rss_before = run.kib("VmRSS")?;
    for i in 0..offers {
        let status = ["pending", "accepted", "rejected"][i % 3];
        let owner = if i % 2 == 0 {
            TRUSTED_OWNER.to_string()
        } else {
            format!("{:032x}", 0x5eed_0000u64 + i as u64)
        };
        let name = format!("offered-image-{i:06}");
        run.fleet
            .state
            .offer_image(PROJECT, &offered(i), &name, &owner, status);
    }
    wait_listed(run, offers as f64, false).await?;
    let listed = |run: &Run| run.fleet.state.shared_list_requests();
    let per_listing = 3 * (offers.div_ceil(3) / PAGE_SIZE + 1) as u64;
    let (r0, c0) = (listed(run), run.cpu()?);
    let deadline = Instant::now() + run.cycle_budget;
    while listed(run) < r0 + LISTINGS * per_listing {
        run.exporter.check_alive()?;
        if Instant::now() > deadline {
            return Err("the listings did not run".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let n = (listed(run) - r0) as f64 / per_listing as f64;
    Ok(Figures {
        requests: per_listing as f64,
        cpu: (run.cpu()? - c0) / n,
        rss_before,
        rss_after: run.kib("VmRSS")?,
    })
}

/// Waits until a good listing holds `offers` images (or, `any`, until one succeeded).
async fn wait_listed(run: &mut Run, offers: f64, any: bool) -> Result<(), String> {
    let deadline = Instant::now() + run.cycle_budget;
    loop {
        let sc = run.scrape(Variant::Text).await?;
        let text = String::from_utf8_lossy(sc.body);
        let ok = sum_samples(&text, "ims_incoming_poll_success", |_| true).unwrap_or(0.0) >= 1.0;
        let held = sum_samples(&text, "ims_incoming_images", |_| true).unwrap_or(0.0);
        if ok && (any || held >= offers) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no good listing of {offers} offered images"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
