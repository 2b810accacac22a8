//! Validated JSON import: streaming reader, validation, COPY into staging, merge.
