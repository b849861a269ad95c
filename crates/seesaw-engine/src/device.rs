//! Where tensors live: `--device cpu` (burn's flex backend, the default) or `--device
//! cuda[:N]` (burn's CUDA backend; a build with `--features cuda`). Asking for a GPU that is
//! not there is an error naming what is missing, checked before burn touches the driver
//! (burn panics from deep inside when it cannot load it).

use std::fmt;
use std::str::FromStr;

use seesaw_model::burn::tensor::Device;

use crate::error::{EngineError, Result};

/// A `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// The GPU with this CUDA ordinal.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = EngineError;

    /// `cpu`, `cuda` (GPU 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            EngineError::Request(format!(
                "--device {s:?}: expected cpu, cuda or cuda:N (N a GPU index)"
            ))
        };
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => {
                let n = other.strip_prefix("cuda:").ok_or_else(bad)?;
                n.parse().map(DeviceSpec::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// The burn device (without autodiff), after checking that it can work.
    pub fn open(&self) -> Result<Device> {
        match *self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            DeviceSpec::Cuda(index) => open_cuda(index),
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(index: usize) -> Result<Device> {
    Err(EngineError::Request(format!(
        "--device cuda:{index}: this seesaw was built without CUDA; build it with \
         `cargo build --release --features cuda` (README, \"CUDA\")"
    )))
}

#[cfg(feature = "cuda")]
fn open_cuda(index: usize) -> Result<Device> {
    let count = cuda_probe::device_count().map_err(EngineError::Request)?;
    if index >= count {
        return Err(EngineError::Request(format!(
            "--device cuda:{index}: the driver sees {count} GPU(s) (CUDA_VISIBLE_DEVICES={})",
            std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "unset".into())
        )));
    }
    let device = Device::cuda(index);
    // Kernels compile through NVRTC on first use: try one now, so that a missing NVRTC is an
    // error here rather than a panic in the middle of a run.
    let probe = std::panic::catch_unwind(|| {
        use seesaw_model::burn::tensor::Tensor;
        let t = Tensor::<1>::ones([4], &device) * 2.0;
        t.sum().into_scalar::<f32>()
    });
    match probe {
        Ok(v) if (v - 8.0).abs() < 1e-6 => Ok(device),
        Ok(v) => Err(EngineError::Request(format!(
            "--device cuda:{index}: a test kernel gave {v} instead of 8"
        ))),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Err(EngineError::Request(format!(
                "--device cuda:{index}: the CUDA backend failed to run a kernel ({why}); \
                 is NVRTC (libnvrtc.so, from the CUDA toolkit) on the library path?"
            )))
        }
    }
}

/// Asks the CUDA driver, loaded by hand, how many GPUs it sees: burn's backend panics when
/// `libcuda.so.1` is missing, so this runs first.
#[cfg(feature = "cuda")]
mod cuda_probe {
    use std::os::raw::c_int;

    type CuInit = unsafe extern "C" fn(flags: u32) -> c_int;
    type CuDeviceGetCount = unsafe extern "C" fn(count: *mut c_int) -> c_int;

    pub fn device_count() -> Result<usize, String> {
        let names = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"];
        // SAFETY: loading the NVIDIA driver library runs its initialisers, which is what
        // the CUDA backend would do next anyway.
        let lib = names
            .iter()
            .find_map(|n| unsafe { libloading::Library::new(*n) }.ok())
            .ok_or_else(|| {
                "--device cuda: no NVIDIA driver (libcuda.so.1 not found); install the driver \
                 or use --device cpu"
                    .to_string()
            })?;
        // SAFETY: the symbols have these C signatures in every CUDA driver API version.
        unsafe {
            let init: libloading::Symbol<CuInit> = lib
                .get(b"cuInit\0")
                .map_err(|e| format!("--device cuda: libcuda has no cuInit: {e}"))?;
            let rc = init(0);
            if rc != 0 {
                return Err(format!(
                    "--device cuda: cuInit failed with CUDA error {rc} (100 means no GPU is \
                     visible: check nvidia-smi and CUDA_VISIBLE_DEVICES)"
                ));
            }
            let get_count: libloading::Symbol<CuDeviceGetCount> = lib
                .get(b"cuDeviceGetCount\0")
                .map_err(|e| format!("--device cuda: libcuda has no cuDeviceGetCount: {e}"))?;
            let mut n: c_int = 0;
            let rc = get_count(&mut n);
            if rc != 0 {
                return Err(format!(
                    "--device cuda: cuDeviceGetCount failed with CUDA error {rc}"
                ));
            }
            Ok(n.max(0) as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse_and_print() {
        for (s, d) in [
            ("cpu", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().expect("parses"), d);
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        for bad in ["gpu:x", "cuda:", "cuda:-1", "tpu", ""] {
            let err = bad.parse::<DeviceSpec>().expect_err(bad).to_string();
            assert!(err.contains("expected cpu, cuda or cuda:N"), "{err}");
        }
        assert!(DeviceSpec::Cpu.open().is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build_it() {
        let err = DeviceSpec::Cuda(0).open().expect_err("no cuda").to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
