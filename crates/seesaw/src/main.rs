//! `seesaw`: long-tailed instance segmentation from one binary.

mod bench;
mod confusion_cmd;
mod data_cmd;
mod demo;
mod eval_cmd;
mod ladder;
mod plot_cmd;
mod train_cmd;
mod viz;
mod weights_cmd;

use std::process::ExitCode;

// The default allocator maps and unmaps large tensors on every op; mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (index 15 of `mi_option_e` in mimalloc.h, v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc returns freed memory to the OS 10 ms after it is freed. A training or test step
/// frees and re-allocates the same large tensors every iteration, so each return came back as
/// page faults and page zeroing: 8% of a demo training step under `perf`, all of it on the
/// main thread. Keeping freed memory (purge delay -1) removes that; the peak resident memory
/// stays the step's own peak.
fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only stores an option value; any thread may call it at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "seesaw",
    version,
    about = "Long-tailed instance segmentation: Seesaw Loss, Mask R-CNN, HTC-Lite, LVIS evaluation",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Datasets: make the built-in one, describe and draw any LVIS/COCO file.
    Data {
        #[command(subcommand)]
        command: data_cmd::DataCommand,
    },
    /// LVIS / COCO AP of a result file, equal to lvis-api and pycocotools.
    Eval(eval_cmd::EvalArgs),
    /// Train a detector from a config (TOML): checkpoints, metrics, --resume.
    Train(train_cmd::TrainArgs),
    /// Run a checkpoint over the validation set: a result file, and the evaluation table.
    Test(train_cmd::TestArgs),
    /// Draw a checkpoint's detections on image files.
    Infer(train_cmd::InferArgs),
    /// The main job on built-in data, no download: see README.md.
    Demo(demo::DemoArgs),
    /// The deck's ladder of modifications (SyncBN, CARAFE, HTC-Lite, TSD, Mask Scoring,
    /// augmentation, FPG, ResNeSt + DCNv2, Seesaw Loss, fine-tuning, TTA), each rung a config
    /// on top of the last, trained, evaluated, tabled beside the deck's numbers and drawn.
    Ladder(ladder::LadderArgs),
    /// mmdetection's confusion matrix of a result file against its ground truth: CSV of every
    /// class, a picture of the most frequent ones.
    ConfusionMatrix(confusion_cmd::ConfusionArgs),
    /// Training curves of work dirs (loss and its parts, learning rate, validation AP), several
    /// runs on one chart.
    Plot(plot_cmd::PlotArgs),
    /// PyTorch weights: inspect a file, convert torchvision / timm / mmdetection / detectron2
    /// checkpoints, export ours as safetensors.
    Weights {
        #[command(subcommand)]
        command: weights_cmd::WeightsCommand,
    },
    /// Measurements for BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn main() -> ExitCode {
    keep_freed_memory();
    // Output piped into `head` ends quietly, as other Unix tools do, instead of a panic.
    #[cfg(unix)]
    // SAFETY: restoring the default action of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data { command } => data_cmd::run(command),
        Command::Eval(args) => eval_cmd::run(&args),
        Command::Train(args) => train_cmd::run_train(&args),
        Command::Test(args) => train_cmd::run_test(&args),
        Command::Infer(args) => train_cmd::run_infer(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Ladder(args) => ladder::run(&args),
        Command::Plot(args) => plot_cmd::run(&args),
        Command::ConfusionMatrix(args) => confusion_cmd::run(&args),
        Command::Weights { command } => weights_cmd::run(command),
        Command::Bench { command } => bench::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
