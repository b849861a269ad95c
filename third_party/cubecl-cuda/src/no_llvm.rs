//! Seesaw's patch: stand-ins for the `cubecl-llvm` items this crate names, so that it builds
//! without `cubecl-llvm`, whose build script downloads a prebuilt LLVM (no network here).
//! Kernels compile through the CUDA C++ backend (NVRTC), which is the only default here; the
//! LLVM backend's compiler refuses every kernel with an error that says why.

use core::fmt;

use cubecl_core::ir::nvidia::SmArch;
use cubecl_core::prelude::KernelDefinition;
use cubecl_server::compiler::CompilationError;
use cubecl_server::kernel::BufferIOAttr;

pub mod nvptx {
    pub mod ptx_version {
        pub use crate::no_llvm::PtxVersion;
    }
}

pub mod shared {
    pub mod lowered_features {
        pub use crate::no_llvm::{GpuTarget, restrict_features};
    }
}

/// A PTX ISA version (8.7 is 87), chosen from the driver's CUDA version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PtxVersion(u32);

impl PtxVersion {
    /// The newest version a driver of CUDA `driver` (12.8 is 12080) loads; None before 10.0.
    pub fn for_driver(driver: i32) -> Option<Self> {
        const DRIVER_PTX: &[(i32, u32)] = &[
            (12090, 88),
            (12080, 87),
            (12070, 86),
            (12050, 85),
            (12040, 84),
            (12030, 83),
            (12020, 82),
            (12010, 81),
            (12000, 80),
            (11080, 78),
            (11070, 77),
            (11060, 76),
            (11050, 75),
            (11040, 74),
            (11030, 73),
            (11020, 72),
            (11010, 71),
            (11000, 70),
            (10020, 65),
            (10010, 64),
            (10000, 63),
        ];
        DRIVER_PTX
            .iter()
            .find(|(first, _)| driver >= *first)
            .map(|(_, ptx)| PtxVersion(*ptx))
    }
}

impl fmt::Display for PtxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ptx{}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuTarget {
    Nvptx,
}

/// Only the LLVM backend restricts features, and it never runs here.
pub fn restrict_features<T>(_props: &mut T, _target: GpuTarget) {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlvmTarget {
    Nvptx,
}

#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    pub arch: Option<()>,
    pub sm_arch: Option<SmArch>,
    pub ptx_version: Option<PtxVersion>,
    pub grid_constants: bool,
}

#[derive(Debug)]
pub struct NvptxModule {
    pub ptx: Vec<core::ffi::c_char>,
    pub ir: String,
    pub shared_memory_size: usize,
    pub io: Vec<BufferIOAttr>,
}

#[derive(Debug)]
pub enum PlironArtifact {
    NvptxCode(NvptxModule),
    Unavailable,
}

#[derive(Clone, Debug)]
pub struct PlironCompiler {
    pub target: LlvmTarget,
}

impl PlironCompiler {
    pub fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &PlironOptions,
    ) -> Result<PlironArtifact, CompilationError> {
        Err(CompilationError::Generic {
            reason: "this cubecl-cuda is built without LLVM (seesaw's offline CUDA build); \
                     kernels compile through CUDA C++ and NVRTC"
                .to_string(),
            backtrace: cubecl_environment::backtrace::BackTrace::capture(),
        })
    }

    pub fn lang_tag(&self) -> &'static str {
        "llvm"
    }
}
