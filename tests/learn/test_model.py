import numpy as np
import pytest

from pnn.core.config import Training


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def test_architecture_follows_the_config(keras) -> None:
    from pnn.learn.model import build_model

    net = build_model(6, [32, 16, 8], "relu", seed=1)
    dense = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [32, 16, 8, 1]
    assert [d.activation.__name__ for d in dense] == ["relu", "relu", "relu", "sigmoid"]
    out = net.predict(np.zeros((3, 6), np.float32), verbose=0)
    assert out.shape == (3, 1) and np.all((out > 0) & (out < 1))


def test_same_seed_same_initial_weights(keras) -> None:
    from pnn.learn.model import build_model

    a = build_model(4, [8], "relu", seed=3).get_weights()
    b = build_model(4, [8], "relu", seed=3).get_weights()
    c = build_model(4, [8], "relu", seed=4).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_sgd_with_nesterov_momentum_and_inverse_time_decay(keras) -> None:
    from pnn.learn.model import build_model, compile_model

    net = build_model(4, [8], "relu", seed=1)
    compile_model(net, Training(learning_rate=0.1, momentum=0.9, nesterov=True, decay=1e-3,
                                schedule="inverse_time"))
    opt = net.optimizer
    assert isinstance(opt, keras.optimizers.SGD)
    assert opt.nesterov and opt.momentum == pytest.approx(0.9)
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    assert float(schedule(1000)) == pytest.approx(0.1 / (1 + 1e-3 * 1000))


def test_each_event_is_scored_by_the_model_that_did_not_train_on_it(keras) -> None:
    from pnn.learn.model import FoldModels
    from pnn.learn.preprocess import InputScaler

    def constant(value):
        inp = keras.Input(shape=(2,))
        out = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant(value))(inp)
        return keras.Model(inp, out)

    scaler = InputScaler(["x"], np.zeros(1), np.ones(1), 500.0, 1500.0)
    fm = FoldModels([constant(-2.0), constant(2.0)], [scaler, scaler], {"features": ["x"]})
    ev = np.arange(6)
    X = np.zeros((6, 1))
    test, _ = fm.score(X, 1000.0, ev, split="test")
    expect = 1 / (1 + np.exp(np.where(ev % 2 == 0, 2.0, -2.0)))
    np.testing.assert_allclose(test, expect, rtol=1e-6)
    train, idx = fm.score(X, 1000.0, ev, split="train")
    # model 0 scores the odd events it trained on, model 1 the even ones
    np.testing.assert_allclose(train, np.where(ev[idx] % 2 == 1, expect[0], expect[1]), rtol=1e-6)


def test_weight_averaging_is_switched_on_by_the_config() -> None:
    from pnn.core.config import Training
    from pnn.learn import model as pnn_model

    net = pnn_model.build_model(3, [4], "relu", seed=0)
    pnn_model.compile_model(net, Training(ema=0.99))
    assert net.optimizer.use_ema and net.optimizer.ema_momentum == 0.99
    pnn_model.compile_model(net, Training())
    assert not net.optimizer.use_ema


def test_scores_near_one_keep_their_order(keras) -> None:
    from pnn.learn.model import build_model, predict

    net = build_model(3, [4], "relu", seed=1)
    # a network whose logit is 4 x the first input: a float32 sigmoid rounds all these to 1
    first = net.get_layer("dense_0")
    kernel = np.zeros((3, 4), np.float32)
    kernel[0, 0] = 1.0
    first.set_weights([kernel, np.zeros(4, np.float32)])
    net.get_layer("score").set_weights([np.array([[4.0], [0], [0], [0]], np.float32),
                                        np.zeros(1, np.float32)])
    X = np.array([[4.5, 0, 0], [5.0, 0, 0], [6.0, 0, 0], [8.0, 0, 0], [-1.0, 0, 0]], np.float32)
    plain = np.asarray(net(X, training=False)).ravel()
    assert (plain[:4] == 1.0).all()  # what float32 gives: four ties
    got = predict(net, X)
    assert np.all(np.diff(got[:4]) > 0) and got[3] < 1.0
    # 1 - score to float64 precision (1e-16 absolute)
    np.testing.assert_allclose(1 - got[:4], 1 / (1 + np.exp([18.0, 20.0, 24.0, 32.0])), rtol=2e-3)
    assert got[4] == pytest.approx(0.5)  # relu: a negative input gives logit 0
