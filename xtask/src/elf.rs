//! Just enough of ELF32 (little-endian) to size firmware: sections, load segments, symbols.

use anyhow::{ensure, Context, Result};
use std::path::Path;

const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHF_WRITE: u32 = 0x1;
const SHF_ALLOC: u32 = 0x2;
const SHF_EXECINSTR: u32 = 0x4;
const PT_LOAD: u32 = 1;
const STT_FUNC: u8 = 2;

pub struct Section {
    pub name: String,
    pub kind: u32,
    pub flags: u32,
    pub size: u64,
}

pub struct Symbol {
    pub name: String,
    pub value: u64,
    pub size: u64,
    pub is_function: bool,
}

pub struct Elf {
    pub sections: Vec<Section>,
    pub symbols: Vec<Symbol>,
    /// (physical address, file size) of every loadable segment.
    pub loads: Vec<(u64, u64)>,
}

fn u16_at(bytes: &[u8], offset: usize) -> Result<u16> {
    let b = bytes.get(offset..offset + 2).context("ELF truncated")?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], offset: usize) -> Result<u32> {
    let b = bytes.get(offset..offset + 4).context("ELF truncated")?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn c_string(bytes: &[u8], offset: usize) -> String {
    let tail = bytes.get(offset..).unwrap_or(&[]);
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

impl Elf {
    pub fn read(path: &Path) -> Result<Elf> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::parse(&bytes)
            .with_context(|| format!("{}: not a 32-bit little-endian ELF", path.display()))
    }

    fn parse(bytes: &[u8]) -> Result<Elf> {
        ensure!(
            bytes.get(..6) == Some(b"\x7fELF\x01\x01"),
            "bad ELF identification"
        );
        let phoff = u32_at(bytes, 0x1c)? as usize;
        let shoff = u32_at(bytes, 0x20)? as usize;
        let phnum = usize::from(u16_at(bytes, 0x2c)?);
        let shnum = usize::from(u16_at(bytes, 0x30)?);
        let shstrndx = usize::from(u16_at(bytes, 0x32)?);

        let mut loads = Vec::new();
        for idx in 0..phnum {
            let base = phoff + idx * 32;
            if u32_at(bytes, base)? == PT_LOAD {
                loads.push((
                    u64::from(u32_at(bytes, base + 12)?),
                    u64::from(u32_at(bytes, base + 16)?),
                ));
            }
        }

        struct Raw {
            name: u32,
            kind: u32,
            flags: u32,
            offset: usize,
            size: u32,
            link: usize,
        }
        let mut raws = Vec::new();
        for idx in 0..shnum {
            let base = shoff + idx * 40;
            raws.push(Raw {
                name: u32_at(bytes, base)?,
                kind: u32_at(bytes, base + 4)?,
                flags: u32_at(bytes, base + 8)?,
                offset: u32_at(bytes, base + 16)? as usize,
                size: u32_at(bytes, base + 20)?,
                link: u32_at(bytes, base + 24)? as usize,
            });
        }
        let names_offset = raws.get(shstrndx).context("no section names")?.offset;
        let sections = raws
            .iter()
            .map(|raw| Section {
                name: c_string(bytes, names_offset + raw.name as usize),
                kind: raw.kind,
                flags: raw.flags,
                size: u64::from(raw.size),
            })
            .collect();

        let mut symbols = Vec::new();
        for symtab in raws.iter().filter(|raw| raw.kind == SHT_SYMTAB) {
            let strtab = raws
                .get(symtab.link)
                .context("symbol table without strings")?;
            for idx in 0..symtab.size as usize / 16 {
                let base = symtab.offset + idx * 16;
                let info = *bytes.get(base + 12).context("ELF truncated")?;
                symbols.push(Symbol {
                    name: c_string(bytes, strtab.offset + u32_at(bytes, base)? as usize),
                    value: u64::from(u32_at(bytes, base + 4)?),
                    size: u64::from(u32_at(bytes, base + 8)?),
                    is_function: info & 0xf == STT_FUNC,
                });
            }
        }
        Ok(Elf {
            sections,
            symbols,
            loads,
        })
    }

    fn alloc(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(|s| s.flags & SHF_ALLOC != 0)
    }

    /// Executable code.
    pub fn text_size(&self) -> u64 {
        self.alloc()
            .filter(|s| s.flags & SHF_EXECINSTR != 0)
            .map(|s| s.size)
            .sum()
    }

    /// Everything stored in flash: code, constants, the vector table and .data's initial values
    /// (not the tiny maps' test images, which stand for a sensor outside the flash budget).
    pub fn flash_size(&self) -> u64 {
        self.alloc()
            .filter(|s| s.kind == SHT_PROGBITS && s.name != ".kiln_test_data")
            .map(|s| s.size)
            .sum()
    }

    /// RAM reserved at link time: .data and .bss, without the stack and heap regions.
    pub fn static_ram_size(&self) -> u64 {
        self.alloc()
            .filter(|s| s.flags & SHF_WRITE != 0 && s.name != ".stack" && s.name != ".heap")
            .map(|s| s.size)
            .sum()
    }

    /// The first flash address after everything loaded from the file.
    pub fn flash_end(&self) -> u64 {
        self.loads
            .iter()
            .filter(|(_, file_size)| *file_size > 0)
            .map(|(address, file_size)| address + file_size)
            .max()
            .unwrap_or(0)
    }

    pub fn symbol(&self, name: &str) -> Option<&Symbol> {
        self.symbols.iter().find(|s| s.name == name)
    }

    /// The summed size of the functions whose (mangled) name contains `pattern`.
    pub fn symbols_size_matching(&self, pattern: &str) -> u64 {
        self.symbols
            .iter()
            .filter(|s| s.is_function && s.name.contains(pattern))
            .map(|s| s.size)
            .sum()
    }
}

/// `llvm-objdump` from the active toolchain's `llvm-tools` component.
pub(crate) fn llvm_objdump() -> Result<std::path::PathBuf> {
    let rustc = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("rustc --print sysroot")?;
    let verbose = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .context("rustc -vV")?;
    let sysroot = String::from_utf8_lossy(&rustc.stdout).trim().to_string();
    let host = String::from_utf8_lossy(&verbose.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV names no host")?;
    let path = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-objdump");
    ensure!(
        path.is_file(),
        "{}: not found; install it with `rustup component add llvm-tools`",
        path.display()
    );
    Ok(path)
}

/// The functions `root` reaches through calls and tail calls (itself included), with their
/// sizes from the symbol table, largest first: the code one entry point can run.
///
/// Edges come from the disassembly: an operand annotated `<callee>` or `<callee+0x..>` inside
/// `caller` names another function. Branches inside a function name the function itself and
/// are not edges.
pub fn reachable_functions(path: &Path, root: &str) -> Result<Vec<(String, u64)>> {
    let elf = Elf::read(path)?;
    let output = std::process::Command::new(llvm_objdump()?)
        .args(["-d", "--no-show-raw-insn"])
        .arg(path)
        .output()
        .context("llvm-objdump")?;
    ensure!(
        output.status.success(),
        "llvm-objdump failed on {}",
        path.display()
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut edges: std::collections::HashMap<String, std::collections::BTreeSet<String>> =
        std::collections::HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        // A function header: `00000458 <kiln_dot4_dsp>:`.
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|head| head.split_once(" <"))
            .map(|(_, name)| name.to_string())
        {
            current = Some(name);
            continue;
        }
        let Some(caller) = &current else { continue };
        let Some((_, rest)) = line.rsplit_once('<') else {
            continue;
        };
        let Some(target) = rest.split_once('>').map(|(target, _)| target) else {
            continue;
        };
        let callee = target.split_once('+').map_or(target, |(name, _)| name);
        if callee != caller {
            edges
                .entry(caller.clone())
                .or_default()
                .insert(callee.to_string());
        }
    }
    ensure!(
        elf.symbol(root).is_some(),
        "{}: no symbol {root}",
        path.display()
    );
    let mut seen = std::collections::BTreeSet::from([root.to_string()]);
    let mut stack = vec![root.to_string()];
    while let Some(function) = stack.pop() {
        for callee in edges.get(&function).into_iter().flatten() {
            if seen.insert(callee.clone()) {
                stack.push(callee.clone());
            }
        }
    }
    let mut sized: Vec<(String, u64)> = seen
        .into_iter()
        .map(|name| {
            let size = elf.symbol(&name).map_or(0, |symbol| symbol.size);
            (name, size)
        })
        .collect();
    sized.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(sized)
}
