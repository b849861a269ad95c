//! Rules of the official tools that are accidents of their code rather than their intent, which
//! we keep (the numbers must be theirs) and say out loud.
//!
//! **Annotation id 0.** pycocotools (`evaluateImg`) and lvis-api (`evaluate_img`) record a match
//! by storing the matched ground truth's id (`dtm[t, d] = gt['id']`) and later count a detection
//! as a true positive when that id is true (`tps = np.logical_and(dtm, ...)`). An annotation whose
//! id is 0 is therefore never matched: the detection that takes it is a false positive (or
//! ignored, where an unmatched detection would be), and the annotation stays a miss. Many
//! converters number annotations from 0. [`crate::Evaluator`] reproduces this in every format and
//! IoU type; [`id_zero_warning`] is what the CLI prints about it.

use std::path::Path;

use seesaw_data::Dataset;

/// Indices (in `annotations`) of the annotations whose id is 0: at most one in a valid file,
/// whose annotation ids are unique.
pub fn annotations_with_id_zero(gt: &Dataset) -> Vec<usize> {
    gt.annotations
        .iter()
        .enumerate()
        .filter(|(_, a)| a.id == 0)
        .map(|(i, _)| i)
        .collect()
}

/// The warning for ground truth `file` when it has annotations whose id is 0, naming them and
/// saying what the official tools (and so we) do with them; `None` when it has none.
pub fn id_zero_warning(file: &Path, gt: &Dataset) -> Option<String> {
    let zero = annotations_with_id_zero(gt);
    let first = *zero.first()?;
    let n = zero.len();
    let which = if n == 1 {
        format!("annotations[{first}] has id 0")
    } else {
        format!("{n} annotations have id 0 (the first is annotations[{first}])")
    };
    Some(format!(
        "{}: {which}: pycocotools and lvis-api never match an annotation whose id is 0 (they \
         test the matched id as a truth value): its detection counts as a false positive and \
         the annotation as a miss, and Seesaw's numbers do the same to stay equal to theirs; \
         {n} annotation{} affected (number annotations from 1 to have {} matched)",
        file.display(),
        if n == 1 { "" } else { "s" },
        if n == 1 { "it" } else { "them" },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_names_the_file_the_annotation_and_the_count() {
        let mut gt: Dataset = serde_json::from_str(
            r#"{"images": [{"id": 1, "width": 10, "height": 10}],
                "annotations": [
                  {"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4},
                  {"id": 0, "image_id": 1, "category_id": 1, "bbox": [3, 3, 2, 2], "area": 4}],
                "categories": [{"id": 1, "name": "a"}]}"#,
        )
        .unwrap();
        let w = id_zero_warning(Path::new("gt.json"), &gt).unwrap();
        assert!(
            w.starts_with("gt.json: annotations[1] has id 0: pycocotools and lvis-api never match"),
            "{w}"
        );
        assert!(w.contains("1 annotation affected"), "{w}");
        gt.annotations[1].id = 7;
        assert_eq!(id_zero_warning(Path::new("gt.json"), &gt), None);
    }
}
