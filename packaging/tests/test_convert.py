import numpy as np
import onnx

from pitahaya.packaging import convert_lightgbm
from pitahaya.packaging.convert import INPUT_NAME, OUTPUT_NAME, inference_session, snap_thresholds_to_float32


def test_snapping_thresholds_keeps_every_lightgbm_prediction(fake_run, sample_features):
    snapped = snap_thresholds_to_float32(fake_run.booster)
    np.testing.assert_array_equal(snapped.predict(sample_features), fake_run.booster.predict(sample_features))


def test_onnx_predictions_match_lightgbm(fake_run, sample_features):
    converted = convert_lightgbm(fake_run.booster)
    session = inference_session(converted.model_bytes)
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: sample_features})
    want = fake_run.booster.predict(sample_features)
    np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-4, atol=1e-4)


def test_conversion_is_byte_reproducible_and_records_its_signature(fake_run):
    first, second = convert_lightgbm(fake_run.booster), convert_lightgbm(fake_run.booster)
    assert first.model_bytes == second.model_bytes
    model = onnx.load_from_string(first.model_bytes)
    assert [i.name for i in model.graph.input] == [first.input.name] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == [first.output.name] == [OUTPUT_NAME]
    assert first.input.shape == (None, fake_run.booster.num_feature())
    assert first.opsets == {entry.domain: entry.version for entry in model.opset_import}
    assert model.doc_string == "" and model.graph.name == "pitahaya"
