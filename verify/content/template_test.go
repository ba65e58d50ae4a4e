package content_test

import (
	"testing"

	"github.com/pullgate/pullgate/verify/content"
)

func TestCheckTemplate(t *testing.T) {
	benign := []string{
		// shapes of real Hugging Face chat templates (Llama 3, ChatML, Mistral)
		`{{- bos_token }}{%- set ns = namespace(system='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] | trim %}{%- endif %}{%- endfor %}{{- '<|start_header_id|>system<|end_header_id|>\n\n' + ns.system + '<|eot_id|>' }}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}`,
		`{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`,
		`{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{%- endif %}{{ strftime_now("%d %b %Y") }} __init` + `ial_prompt_`,
		`{{ .System }} {{ .Prompt }}`, // Ollama Go template
	}
	for _, tpl := range benign {
		if got := content.CheckTemplate(tpl); got != "" {
			t.Errorf("benign template flagged for %q:\n%s", got, tpl)
		}
	}
	attacks := map[string]string{
		`{{ cycler.__init__.__globals__.os.popen('id').read() }}`:             "__globals__",
		`{{ ''.__class__.__mro__[1].__subclasses__() }}`:                      "__class__",
		`{{ lipsum|attr("__glo" ~ "bals__") }}`:                               "|attr",
		`{{ self._TemplateReference__context.joiner.__init__ }}`:              "__init__",
		`{{ request.application.__self__._get_data_for_json.__reduce_ex__ }}`: "__self__",
		`{{ x["\x5f\x5fclass\x5f\x5f"] }}`:                                    `\x5f\x5f`,
		`{{ foo.__weakref__ }}`:                                               "__weakref__",
		`{{ config.items() }}{{ "".join(["a"]) }}{{ namespace.__doc__ }}`:     "__doc__",
	}
	for tpl, want := range attacks {
		if got := content.CheckTemplate(tpl); got != want {
			t.Errorf("CheckTemplate(%q) = %q, want %q", tpl, got, want)
		}
	}
}
