//! Device options as `key=value` lists, in Cloud Hypervisor's style
//! (`--disk path=disk.img,readonly=on`): one small parser for every device
//! flag, with errors that name the flag and the bad key.

use std::collections::BTreeMap;

/// A parsed option list: each key once.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    flag: &'static str,
    values: BTreeMap<String, String>,
}

impl Options {
    /// Parses `text` for `flag` (e.g. `"--disk"`), accepting only `keys`.
    pub fn parse(flag: &'static str, text: &str, keys: &[&str]) -> Result<Options, String> {
        let mut values = BTreeMap::new();
        for item in text.split(',') {
            let Some((key, value)) = item.split_once('=') else {
                return Err(format!("{flag} {text:?}: {item:?} is not key=value"));
            };
            if !keys.contains(&key) {
                return Err(format!(
                    "{flag} {text:?}: unknown key {key:?} (known: {})",
                    keys.join(", ")
                ));
            }
            if values.insert(key.to_string(), value.to_string()).is_some() {
                return Err(format!("{flag} {text:?}: {key} given twice"));
            }
        }
        Ok(Options { flag, values })
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of a required `key`.
    pub fn required(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{}: {key}= is required", self.flag))
    }

    /// `key=on|off` (default `default`).
    pub fn on_off(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some("on") => Ok(true),
            Some("off") => Ok(false),
            Some(other) => Err(format!(
                "{}: {key}={other:?}: expected on or off",
                self.flag
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_errors_name_the_key() {
        let o = Options::parse("--disk", "path=a.img,readonly=on", &["path", "readonly"]).unwrap();
        assert_eq!(o.required("path"), Ok("a.img"));
        assert_eq!(o.on_off("readonly", false), Ok(true));
        assert_eq!(o.on_off("direct", false), Ok(false));
        let e = Options::parse("--disk", "path=a,colour=red", &["path"]).unwrap_err();
        assert!(e.contains("unknown key \"colour\""), "{e}");
        assert!(
            Options::parse("--disk", "a.img", &["path"])
                .unwrap_err()
                .contains("key=value")
        );
        assert!(
            Options::parse("--disk", "path=a,path=b", &["path"])
                .unwrap_err()
                .contains("twice")
        );
        let o = Options::parse("--disk", "readonly=yes", &["path", "readonly"]).unwrap();
        assert!(
            o.on_off("readonly", false)
                .unwrap_err()
                .contains("on or off")
        );
        assert!(
            o.required("path")
                .unwrap_err()
                .contains("path= is required")
        );
    }
}
