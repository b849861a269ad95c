//! `seesaw bench ...`: measurements that go into BENCHMARKS.md.

mod data;
pub mod long_tail;
mod loss;
mod ops;
mod step;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Forward + backward time of Seesaw Loss against cross-entropy (N = 512; C = 80 and 1203).
    Loss(loss::LossArgs),
    /// Train a classifier on a synthetic long-tailed set once per loss and report top-1
    /// accuracy per frequency group on balanced test data.
    LongTailClassify(long_tail::LongTailArgs),
    /// Speed of NMS (10k, 100k boxes) and RoIAlign forward + backward (512 RoIs, 4 FPN levels).
    Ops(ops::OpsArgs),
    /// One training iteration and one inference of a detector (default: Mask R-CNN R50-FPN at
    /// 800x1333, batch 1) on a synthetic batch; peak memory.
    Step(step::StepArgs),
    /// Training samples per second of the data pipeline (LVIS scales, flip, masks).
    Data(data::DataArgs),
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Loss(a) => loss::run(&a),
        BenchCommand::LongTailClassify(a) => long_tail::run(&a),
        BenchCommand::Ops(a) => ops::run(&a),
        BenchCommand::Step(a) => step::run(&a),
        BenchCommand::Data(a) => data::run(&a),
    }
}
