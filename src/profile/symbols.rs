//! Guest symbols for the profiler: function start addresses and names,
//! read from an ELF's symbol table (a vmlinux, the tiny guest) with the
//! `object` crate, or from a System.map / /proc/kallsyms text file
//! (`--profile-symbols`). A lookup gives the nearest symbol at or below an
//! address, within the text.

use std::ops::Range;

use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind, SymbolKind};

/// The x86-64 kernel's text mapping (`__START_KERNEL_map`): a kernel
/// runs its own text at or above this address once it is at its link
/// address, whatever its size or where it was loaded.
pub const KERNEL_TEXT_MAP: u64 = 0xffff_ffff_8000_0000;

/// One function: where it starts, its name, and whether its first
/// instructions set up a frame pointer (`push %rbp; mov %rsp,%rbp`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Function {
    start: u64,
    name: String,
    frame: bool,
}

/// Sorted function symbols and the text they cover.
#[derive(Debug, Default)]
pub struct Symbols {
    /// Sorted by start, one name per start.
    starts: Vec<Function>,
    /// Executable address ranges (sections, or `_stext`.. `_etext`).
    text: Vec<Range<u64>>,
}

impl Symbols {
    /// The function symbols of the ELF in `image` (none when it has no
    /// symbol table: the profile then shows addresses).
    pub fn from_elf(image: &[u8]) -> Result<Symbols, String> {
        let file = object::File::parse(image).map_err(|e| format!("not an ELF file: {e}"))?;
        let mut text = Vec::new();
        let mut exec_sections = Vec::new();
        for section in file.sections() {
            let exec = match section.flags() {
                SectionFlags::Elf { sh_flags } => {
                    sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0
                }
                _ => section.kind() == SectionKind::Text,
            };
            if exec && section.size() > 0 {
                let start = section.address();
                text.push(start..start.saturating_add(section.size()));
                exec_sections.push(section.index());
            }
        }
        let mut starts: Vec<Function> = file
            .symbols()
            .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Unknown))
            .filter_map(|s| {
                let index = s.section_index().filter(|i| exec_sections.contains(i))?;
                let name = s
                    .name()
                    .ok()
                    .filter(|n| !n.is_empty() && !n.starts_with(".L"))?;
                let section = file.section_by_index(index).ok()?;
                let code = section.data().ok().and_then(|d| {
                    let at = usize::try_from(s.address().checked_sub(section.address())?).ok()?;
                    d.get(at..d.len().min(at + PROLOGUE_WINDOW))
                });
                Some(Function {
                    start: s.address(),
                    name: name.to_string(),
                    frame: code.is_some_and(sets_up_frame),
                })
            })
            .collect();
        sort_dedup(&mut starts);
        Ok(Symbols { starts, text })
    }

    /// The text symbols of a System.map or kallsyms file: lines of
    /// `ADDRESS TYPE NAME [module]`, text types `T`/`t`/`W`/`w`.
    pub fn from_map(map: &str) -> Result<Symbols, String> {
        let mut starts = Vec::new();
        let (mut stext, mut etext) = (None, None);
        for line in map.lines() {
            let mut words = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            match name {
                "_stext" | "_text" if stext.is_none() => stext = Some(addr),
                "_etext" => etext = Some(addr),
                _ => {}
            }
            if matches!(kind, "T" | "t" | "W" | "w") && addr != 0 {
                // No code to look at: assume a frame; a chain that is not
                // one still ends at the first implausible link.
                starts.push(Function {
                    start: addr,
                    name: name.to_string(),
                    frame: true,
                });
            }
        }
        if starts.is_empty() {
            return Err(
                "no text symbols (expected lines such as `ffffffff81000000 T _text`)".into(),
            );
        }
        sort_dedup(&mut starts);
        let text = match (stext, etext) {
            (Some(s), Some(e)) if s < e => std::iter::once(s..e).collect(),
            _ => std::iter::once(
                starts[0].start..starts[starts.len() - 1].start.saturating_add(1 << 20),
            )
            .collect(),
        };
        Ok(Symbols { starts, text })
    }

    /// Whether there are any symbols at all.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// How many function symbols.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether `addr` lies in the text (no text known: anything in the
    /// kernel's text mapping).
    pub fn in_text(&self, addr: u64) -> bool {
        if self.text.is_empty() {
            return addr >= KERNEL_TEXT_MAP;
        }
        self.text.iter().any(|r| r.contains(&addr))
    }

    /// The function holding `addr`, if it is in the text.
    fn function(&self, addr: u64) -> Option<&Function> {
        if !self.in_text(addr) {
            return None;
        }
        let i = self.starts.partition_point(|f| f.start <= addr);
        i.checked_sub(1).map(|i| &self.starts[i])
    }

    /// The start of the function holding `addr`, if known.
    pub fn start_of(&self, addr: u64) -> Option<u64> {
        self.function(addr).map(|f| f.start)
    }

    /// The name of the function holding `addr`, or its address in hex.
    pub fn name(&self, addr: u64) -> String {
        match self.function(addr) {
            Some(f) => f.name.clone(),
            None => format!("{addr:#x}"),
        }
    }

    /// Whether the function holding `addr` keeps a frame pointer (without
    /// symbols: whether `addr` is in the text, and assume so).
    pub fn keeps_frame(&self, addr: u64) -> bool {
        if self.starts.is_empty() {
            return self.in_text(addr);
        }
        self.function(addr).is_some_and(|f| f.frame)
    }

    /// How many functions set up a frame pointer.
    pub fn with_frames(&self) -> usize {
        self.starts.iter().filter(|f| f.frame).count()
    }
}

/// Bytes looked at from a function's start for its frame set-up.
const PROLOGUE_WINDOW: usize = 16;

/// Whether `code` (a function's first bytes) sets up a frame pointer:
/// `push %rbp` (55) then `mov %rsp,%rbp` (48 89 e5), after at most an
/// `endbr64` and an ftrace call or nop.
fn sets_up_frame(code: &[u8]) -> bool {
    code.windows(4).any(|w| w == [0x55, 0x48, 0x89, 0xe5])
}

/// Sorts by address and keeps one name per address (the first in name
/// order that does not start with `__`, for stable, readable output).
fn sort_dedup(starts: &mut Vec<Function>) {
    starts.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then_with(|| a.name.starts_with("__").cmp(&b.name.starts_with("__")))
            .then_with(|| a.name.cmp(&b.name))
    });
    starts.dedup_by_key(|f| f.start);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_map_gives_text_symbols_and_the_text_range() {
        let map = "ffffffff81000000 T _text\n\
                   ffffffff81000000 T startup_64\n\
                   ffffffff81001000 t do_one\n\
                   ffffffff81002000 D some_data\n\
                   ffffffff81003000 W weak_fn\n\
                   garbage line\n\
                   zzzz T bad_address\n\
                   ffffffff81004000 T _etext\n";
        let s = Symbols::from_map(map).unwrap();
        assert_eq!(s.name(0xffff_ffff_8100_0010), "_text");
        assert_eq!(s.name(0xffff_ffff_8100_1fff), "do_one");
        assert_eq!(
            s.name(0xffff_ffff_8100_2100),
            "do_one",
            "data is not a function"
        );
        assert_eq!(s.name(0xffff_ffff_8100_3000), "weak_fn");
        assert_eq!(
            s.name(0xffff_ffff_8100_4000),
            "0xffffffff81004000",
            "past _etext"
        );
        assert_eq!(s.name(0x1000), "0x1000");
        assert!(s.in_text(0xffff_ffff_8100_0000) && !s.in_text(0xffff_ffff_8100_4000));
        assert!(Symbols::from_map("nothing here\n").is_err());
    }

    #[test]
    fn the_tiny_guest_elf_has_its_functions() {
        let s = Symbols::from_elf(crate::tiny_guest::ELF).unwrap();
        assert!(!s.is_empty());
        let start = s.starts.iter().find(|f| f.name == "_start").unwrap().start;
        assert_eq!(s.name(start), "_start");
        assert_eq!(s.name(start + 1), "_start");
        assert!(s.in_text(start));
    }

    #[test]
    fn no_symbol_table_gives_addresses() {
        let s = Symbols::default();
        assert!(s.is_empty());
        assert_eq!(s.name(0xffff_ffff_8123_4567), "0xffffffff81234567");
        assert!(s.in_text(KERNEL_TEXT_MAP) && !s.in_text(0x100000));
        assert!(Symbols::from_elf(b"not an elf").is_err());
    }
}
