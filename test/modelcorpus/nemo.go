package modelcorpus

import (
	"archive/tar"
	"sort"
)

// NeMoASRConfig is a model_config.yaml laid out as NeMo writes it for a
// Conformer-CTC ASR model (stt_en_conformer_ctc_small; OmegaConf.save of
// the model's cfg): Hydra _target_ values under nemo.collections, the
// top-level Hydra 0.x style target, tokenizer artifacts as nemo: paths, a
// callback list with a lightning target.
const NeMoASRConfig = `sample_rate: 16000
log_prediction: true
ctc_reduction: mean_batch
skip_nan_grad: false
train_ds:
  manifest_filepath: null
  sample_rate: 16000
  batch_size: 32
  shuffle: true
  num_workers: 8
  max_duration: 20.0
  is_tarred: false
  tarred_audio_filepaths: null
tokenizer:
  dir: null
  type: bpe
  model_path: nemo:0b8d8a7e3c5b4e0f_tokenizer.model
  vocab_path: nemo:7f3c12ab_vocab.txt
preprocessor:
  _target_: nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor
  sample_rate: 16000
  normalize: per_feature
  window_size: 0.025
  window_stride: 0.01
  window: hann
  features: 80
  n_fft: 512
  log: true
  dither: 1.0e-05
  pad_to: 0
  pad_value: 0.0
spec_augment:
  _target_: nemo.collections.asr.modules.SpectrogramAugmentation
  freq_masks: 2
  time_masks: 5
  freq_width: 27
  time_width: 0.05
encoder:
  _target_: nemo.collections.asr.modules.ConformerEncoder
  feat_in: 80
  feat_out: -1
  n_layers: 16
  d_model: 176
  subsampling: striding
  subsampling_factor: 4
  self_attention_model: rel_pos
  n_heads: 4
  att_context_size:
  - -1
  - -1
  conv_kernel_size: 31
  dropout: 0.1
decoder:
  _target_: nemo.collections.asr.modules.ConvASRDecoder
  feat_in: 176
  num_classes: 128
  vocabulary: []
optim:
  name: adamw
  lr: 2.0
  betas:
  - 0.9
  - 0.98
  weight_decay: 0.001
  sched:
    name: NoamAnnealing
    d_model: 176
    warmup_steps: 10000
    min_lr: 1.0e-06
callbacks:
- _target_: lightning.pytorch.callbacks.LearningRateMonitor
  logging_interval: step
loss:
  _target_: torch.nn.CTCLoss
  _partial_: true
  zero_infinity: true
target: nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE
nemo_version: 2.3.2
`

// NeMoTar writes a .nemo archive as NeMo's SaveRestoreConnector does
// (_make_nemo_file_from_folder: tarfile.open(path, "w:") and
// tar.add(folder, arcname="."), which walks the folder in sorted order):
// the root "./" directory, then every file as "./<name>", sorted.
// Members: model_config.yaml, model_weights.ckpt (a torch.save zip of a
// state dict) and the tokenizer artifacts the config names. extra are
// added as given (nil weights leave model_weights.ckpt out).
func NeMoTar(config string, weights []byte, extra ...TarEntry) []byte {
	files := []TarEntry{
		{Name: "model_config.yaml", Data: []byte(config)},
		{Name: "0b8d8a7e3c5b4e0f_tokenizer.model", Data: []byte{0x0a, 0x07, 0x0a, 0x05, '<', 'u', 'n', 'k', '>'}},
		{Name: "7f3c12ab_vocab.txt", Data: []byte("<unk>\n\u2581the\n\u2581a\n")},
	}
	if weights != nil {
		files = append(files, TarEntry{Name: "model_weights.ckpt", Data: weights})
	}
	files = append(files, extra...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	es := []TarEntry{{Name: "./", Type: tar.TypeDir, Mode: 0o755}}
	for _, f := range files {
		f.Name = "./" + f.Name
		es = append(es, f)
	}
	return Tar(es, nil)
}

// NeMoWeights is model_weights.ckpt: torch.save(state_dict) (torch 2.x
// records, archive prefix "model_weights" as torch names it after the
// file) with pkl as its data.pkl (nil: the state dict's pickle).
func NeMoWeights(pkl []byte) []byte {
	return TorchSaveZip(TorchSave2Records("model_weights", SmallTorchModel(), pkl, nil))
}
