package modelcorpus

import (
	"encoding/json"
)

// Hugging Face configs that name other repositories (load-time closure).
//
// Layout: peft's PeftConfigMixin.save_pretrained and transformers'
// PretrainedConfig.to_json_file both write json.dumps(d, indent=2,
// sort_keys=True) (transformers adds a final newline); encoding/json's
// MarshalIndent of a map with a two-space indent writes the same layout
// (keys sorted, ": " and "," separators, nested containers indented);
// only floats differ in spelling (Go writes 0 and 10000 where Python
// writes 0.0 and 10000.0), which no check here depends on.

// PEFTAdapterConfig is adapter_config.json as peft 0.11 writes it for a
// LoRA adapter (LoraConfig defaults, task CAUSAL_LM, q_proj/v_proj) on the
// base model base (base_model_name_or_path: what PeftModel.from_pretrained
// and AutoPeftModelForCausalLM load the adapter onto).
func PEFTAdapterConfig(base string) []byte {
	return hfJSON(map[string]any{
		"alpha_pattern":           map[string]any{},
		"auto_mapping":            nil,
		"base_model_name_or_path": base,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"layer_replication":       nil,
		"layers_pattern":          nil,
		"layers_to_transform":     nil,
		"loftq_config":            map[string]any{},
		"lora_alpha":              16,
		"lora_dropout":            0.05,
		"megatron_config":         nil,
		"megatron_core":           "megatron.core",
		"modules_to_save":         nil,
		"peft_type":               "LORA",
		"r":                       8,
		"rank_pattern":            map[string]any{},
		"revision":                nil,
		"target_modules":          []string{"v_proj", "q_proj"},
		"task_type":               "CAUSAL_LM",
		"use_dora":                false,
		"use_rslora":              false,
	}, false)
}

// TransformersConfig is a config.json as transformers' save_pretrained
// writes it for a small Llama-architecture model saved from nameOrPath
// (_name_or_path), with autoMap as its auto_map (nil: none; a value
// "org/repo--modeling_x.XModel" makes get_class_from_dynamic_module
// import XModel from org/repo's modeling_x.py).
func TransformersConfig(nameOrPath string, autoMap map[string]any) []byte {
	d := map[string]any{
		"_name_or_path":           nameOrPath,
		"architectures":           []string{"LlamaForCausalLM"},
		"attention_bias":          false,
		"attention_dropout":       0.0,
		"bos_token_id":            1,
		"eos_token_id":            2,
		"hidden_act":              "silu",
		"hidden_size":             64,
		"initializer_range":       0.02,
		"intermediate_size":       172,
		"max_position_embeddings": 2048,
		"model_type":              "llama",
		"num_attention_heads":     4,
		"num_hidden_layers":       2,
		"num_key_value_heads":     4,
		"pretraining_tp":          1,
		"rms_norm_eps":            1e-06,
		"rope_scaling":            nil,
		"rope_theta":              10000.0,
		"tie_word_embeddings":     false,
		"torch_dtype":             "float32",
		"transformers_version":    "4.44.2",
		"use_cache":               true,
		"vocab_size":              256,
	}
	if autoMap != nil {
		d["auto_map"] = autoMap
	}
	return hfJSON(d, true)
}

// TokenizerConfigAutoMap is a tokenizer_config.json whose auto_map names
// the tokenizer classes as transformers writes them for remote-code
// tokenizers: [slow, fast], either possibly null.
func TokenizerConfigAutoMap(slow, fast any) []byte {
	return hfJSON(map[string]any{
		"auto_map":                     map[string]any{"AutoTokenizer": []any{slow, fast}},
		"bos_token":                    "<s>",
		"clean_up_tokenization_spaces": false,
		"eos_token":                    "</s>",
		"model_max_length":             2048,
		"tokenizer_class":              "XTokenizer",
	}, true)
}

func hfJSON(d map[string]any, newline bool) []byte {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		panic(err)
	}
	if newline {
		b = append(b, '\n')
	}
	return b
}
