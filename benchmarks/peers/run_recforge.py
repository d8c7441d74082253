#!/usr/bin/env python
"""recforge runner: recforge.data.readers.read_table (pyarrow CSV) + Schema/fields + Preprocessor
(vocabularies and MinMax fitted on the training split), models from recforge's registry,
recforge.train.Trainer.fit for the epoch and Trainer.predict for inference.

Variants (extra flags, stripped before bench_common parses the contract's arguments):
  --bf16          TrainConfig(bf16=True): forward passes (train and predict) under bfloat16 autocast
  --sparse-emb    model option sparse=True: sparse embedding gradients + recforge's SparseRowAdam
                  (lazy Adam on the rows a batch touches) for every table
  --dense-emb     model option sparse=False: dense gradients and torch's fused Adam for every table
                  (without either flag recforge's default sparse=auto decides per table: on the
                  1M-row Criteo-shaped data the 800k-row embedding table goes sparse)
  --no-batch-norm model option batch_norm=False (the contract's "no batch norm where it can be
                  switched off"); without it DeepFM/DCN/DNN keep recforge's default, batch norm
                  in the deep tower (issue 16: +0.0095 AUC after one epoch on this data)
  --param K=V     set model option K to V (V parsed as JSON, else a string), repeatable, after the
                  contract's values: an experiment knob (e.g. --param alpha=0 for DIEN without the
                  auxiliary loss, --param embedding_init_std=0.0001 for the peers' N(0, 1e-4)
                  embeddings); the options appear in the peer name
  --dien-in-batch DIEN: the auxiliary loss's negatives drawn from the batch's real behaviours
                  (negatives=in_batch) instead of the data's uniform negative columns, which are
                  then not read (benchmarks/results/seq_beauty.md: uniform negatives are solved
                  by popularity and teach the extractor little)
  --grad-clip-norm X  TrainConfig(grad_clip_norm=X): clip the gradients' joint norm before each
                  step (FuxiCTR clips at 10); the peer name gets "_clip=X"
  --din-dice-bn   DIN: the output MLP with Dice and batch norm (torch-rechub's hard-wired DIN MLP)
                  instead of the contract's ReLU without batch norm; the attention unit stays ReLU
The peer name in the JSON record carries the variant ("recforge", "recforge_bf16", ...).

Where recforge's defaults differ from the contract, the runner sets the contract's values:
  * DIN: recforge's defaults are hidden (200, 80) with Dice, attention unit (36,) with Dice;
    set to hidden [400,400,400] ReLU and attention [80,40] ReLU, softmax off as in
    the peers (recforge's default is on; --din-softmax turns it on).
  * TrainConfig: epochs 1, patience 0 and lr_patience 0 (no early stopping / LR schedule),
    progress off, eval_batch_size = batch size (its default is 16384), seed = HP seed.
  * Dense recipe: a NumericField has ONE transform (none | log | standard | minmax); "log" is
    fill -> clip(>=0) -> log1p without scaling and "minmax" scales the raw values.  So the
    fill/clip/log1p step is done with pyarrow.compute on the read table (timed, inside
    preprocess), and recforge's own "minmax" transform (fitted on train, clipped to [0, 1]) scales.
recforge's own defaults that already match the contract: Adam (sparse=auto: lazy Adam on the rows
a batch touches for large tables, torch's fused dense Adam for the rest), DNN/DCN hidden (400,400,400) ReLU, no dropout, DCN 3 cross
layers, embedding_l2 = dense_l2 = 0.

Trainer.predict returns logits for binary tasks; recforge.metrics.sigmoid turns them into
probabilities for the harness's AUC/logloss.
"""
import json
import sys

import bench_common as bc


def _pop_flag(argv, flag):
    if flag in argv:
        argv.remove(flag)
        return True
    return False


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    bf16 = _pop_flag(argv, "--bf16")
    sparse_emb = _pop_flag(argv, "--sparse-emb")
    dense_emb = _pop_flag(argv, "--dense-emb")
    no_batch_norm = _pop_flag(argv, "--no-batch-norm")
    din_dice_bn = _pop_flag(argv, "--din-dice-bn")
    dien_in_batch = _pop_flag(argv, "--dien-in-batch")
    clip = 0.0
    if "--grad-clip-norm" in argv:
        i = argv.index("--grad-clip-norm")
        clip = float(argv[i + 1])
        del argv[i:i + 2]
    extra_params = {}
    while "--param" in argv:
        i = argv.index("--param")
        key, _, val = argv[i + 1].partition("=")
        try:
            extra_params[key] = json.loads(val)
        except ValueError:
            extra_params[key] = val
        del argv[i:i + 2]
    args = bc.parse_args(models=("deepfm", "dcn", "din", "dien", "dnn"), argv=argv)
    args.no_batch_norm = no_batch_norm
    hp = bc.HP
    peer = "recforge" + ("_bf16" if bf16 else "") + ("_sparse" if sparse_emb else "")
    peer += "_dense" if dense_emb else ""
    peer += "_nobn" if no_batch_norm else ""
    peer += "_dicebn" if din_dice_bn else ""
    peer += "_inbatch" if dien_in_batch else ""
    peer += "".join(f"_{k}={v}" for k, v in extra_params.items())
    peer += f"_clip={clip:g}" if clip else ""
    with bc.Bench(peer, args, version_modules=("recforge", "pyarrow")) as b:
        import numpy as np
        import pyarrow.compute as pc
        from recforge import CategoricalField, NumericField, Schema, SequenceField
        from recforge import metrics
        from recforge.config import TrainConfig
        from recforge.data.encode.preprocess import Preprocessor
        from recforge.data.read.readers import read_table
        from recforge.data.read.stream import release_memory
        from recforge.models import registry
        from recforge.train.trainer import Trainer, seed_everything

        emb = hp["embedding_dim"]
        with b.phase("preprocess"):
            if args.model in ("din", "dien"):
                L = args.max_len
                negs = ()
                if args.model == "dien" and not dien_in_batch:  # the data's negative behaviours (gen_data.py --negatives)
                    negs = (SequenceField(bc.DIEN_NEG[0], max_len=L, separator="^", aligned_with="hist_item_id",
                                          share_embedding_with="item_id"),
                            SequenceField(bc.DIEN_NEG[1], max_len=L, separator="^", aligned_with="hist_item_id",
                                          share_embedding_with="cate_id"))
                schema = Schema(
                    fields=(
                        CategoricalField("user_id", group="user"),
                        CategoricalField("item_id", group="item"),
                        CategoricalField("cate_id", group="item"),
                        SequenceField("hist_item_id", max_len=L, separator="^",
                                      share_embedding_with="item_id"),
                        SequenceField("hist_cate_id", max_len=L, separator="^", aligned_with="hist_item_id",
                                      share_embedding_with="cate_id"),
                    ) + negs,
                    label=bc.LABEL, embedding_dim=emb,
                )
                table = read_table(args.data, schema=schema)
            else:
                schema = Schema(
                    fields=tuple(NumericField(c, fill_value=0.0, transform="minmax") for c in bc.DENSE_COLS)
                    + tuple(CategoricalField(c) for c in bc.CAT_COLS),
                    label=bc.LABEL, embedding_dim=emb,
                )
                table = read_table(args.data, schema=schema)
                # missing -> 0, clip >= 0, log1p (recforge's "log" transform cannot be followed by
                # its "minmax" one), then recforge's MinMax in the Preprocessor
                for c in bc.DENSE_COLS:
                    col = pc.log1p(pc.max_element_wise(pc.fill_null(table.column(c), 0.0), 0.0))
                    table = table.set_column(table.schema.get_field_index(c), c, col)
            n = table.num_rows
            cut = bc.split_point(n, test_rows=args.test_rows)
            train_raw, test_raw = table.slice(0, cut), table.slice(cut)
            pre = Preprocessor(schema).fit(train_raw)
            train = pre.transform(train_raw)
            test = pre.transform(test_raw)
            del table, train_raw, test_raw
            release_memory()  # the raw table's pages go back to the OS before training

        if args.model == "din":
            params = {"hidden": hp["hidden_units"], "activation": hp["activation"],
                      "attention_hidden": hp["att_hidden_units"], "attention_activation": hp["activation"],
                      "softmax": args.din_softmax, "dropout": hp["dropout"]}
        elif args.model == "dien":
            # recforge's DIEN defaults (AUGRU, GRU width = behaviour width 2 x 16 = 32, auxiliary loss
            # alpha 1.0 with the inner-product score, sum pooling + candidate product) except the
            # contract's MLP and attention unit; negatives are the data's, as for the peers
            params = {"hidden": hp["hidden_units"], "activation": hp["activation"],
                      "attention_hidden": hp["att_hidden_units"], "attention_activation": hp["activation"],
                      "dropout": hp["dropout"], "alpha": hp["dien_alpha"], "negative_behaviours": list(bc.DIEN_NEG)}
            if dien_in_batch:
                params.update(negatives="in_batch", negative_behaviours=None)
        elif args.model == "dcn":
            params = {"hidden": hp["hidden_units"], "activation": hp["activation"], "dropout": hp["dropout"],
                      "cross_layers": hp["cross_layers"]}
        else:  # deepfm, and dnn (recforge only: the MLP-over-embeddings baseline, for mlp_limit.py)
            params = {"hidden": hp["hidden_units"], "activation": hp["activation"], "dropout": hp["dropout"]}
        if din_dice_bn and args.model in ("din", "dien"):
            params.update(activation="dice", batch_norm=True)
        if args.no_batch_norm and args.model not in ("din", "dien"):
            params["batch_norm"] = False  # the peers' setting where they can switch it off
        params.update(embedding_dim=emb)
        if sparse_emb or dense_emb:
            params.update(sparse=sparse_emb)
        params.update(extra_params)
        cfg = TrainConfig(epochs=hp["epochs"], batch_size=args.batch_size, lr=hp["lr"], optimizer="adam",
                          embedding_l2=hp["l2"], dense_l2=hp["l2"], patience=0, lr_patience=0,
                          seed=hp["seed"], bf16=bf16, device="cpu", threads=args.threads, progress=False,
                          eval_batch_size=args.batch_size, grad_clip_norm=clip)
        seed_everything(cfg.seed)
        model = registry.build(args.model, pre.schema, params)
        trainer = Trainer(model, cfg)
        vocab = sum(f.vocab_size for f in pre.schema.sparse_fields)
        b.note(vocab_total=int(vocab), params=int(sum(p.numel() for p in model.parameters())),
               model_params=params, bf16=bf16,
               optimizers=[type(o).__name__ for o in trainer.optimizers])

        with b.phase("train"):
            history = trainer.fit(train)
        with b.phase("predict"):
            pred = metrics.sigmoid(trainer.predict(test))
        b.note(recforge_train_samples_per_s=round(history[-1]["train_samples_per_s"], 1),
               train_loss=round(history[-1]["train_loss"], 5))
        b.finish(np.asarray(test.label), pred, n_train=len(train), n_test=len(test))


if __name__ == "__main__":
    main()
