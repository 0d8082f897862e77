import pytest

from pitahaya.client_runtime import (
    FeatureCodeError,
    LoadedPackage,
    ModelLoadError,
    Scene,
    SelfTestError,
    read_package,
)

from package_factory import SCENE_DIR, linear_model, make_archive, sample_views


def test_valid_package_loads_and_predicts(archive: bytes) -> None:
    loaded = LoadedPackage.load(read_package(archive))
    extractor = loaded.new_extractor()
    history = sample_views()
    for view in history:
        extractor.update(view)
    features = extractor.features([history[0].as_candidate()], history[-1].end_ts)
    assert loaded.infer(features).shape == (1,)


def test_feature_code_that_raises_on_import_is_refused() -> None:
    with pytest.raises(FeatureCodeError, match="RuntimeError"):
        LoadedPackage.load(read_package(make_archive(feature_source="raise RuntimeError('boom')\n")))


def test_feature_code_that_raises_while_computing_is_refused() -> None:
    source = Scene.load(SCENE_DIR).feature_source.replace("ratio = min(", "ratio = 1 / 0 + min(")
    with pytest.raises(FeatureCodeError, match="ZeroDivisionError"):
        LoadedPackage.load(read_package(make_archive(feature_source=source)))


def test_model_with_wrong_input_shape_is_refused() -> None:
    n = len(Scene.load(SCENE_DIR).extractor_class().feature_names)
    with pytest.raises(ModelLoadError, match="does not take"):
        LoadedPackage.load(read_package(make_archive(model=linear_model(n + 1, width=n + 1))))


def test_golden_vectors_not_reproduced_are_refused() -> None:
    with pytest.raises(SelfTestError, match="differ from golden"):
        LoadedPackage.load(read_package(make_archive(golden_shift=5.0)))
