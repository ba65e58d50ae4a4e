package content_test

import (
	"strings"
	"testing"

	"github.com/pullgate/pullgate/verify/content"
)

// CheckTemplate is the Jinja check of every template carrier (GGUF keys,
// JSON and YAML template keys, template files): parsed, not grepped.
func TestCheckTemplate(t *testing.T) {
	benign := []string{
		// shapes of real Hugging Face chat templates (Llama 3, ChatML, Mistral)
		`{{- bos_token }}{%- set ns = namespace(system='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] | trim %}{%- endif %}{%- endfor %}{{- '<|start_header_id|>system<|end_header_id|>\n\n' + ns.system + '<|eot_id|>' }}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}`,
		`{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`,
		`{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{%- endif %}{{ strftime_now("%d %b %Y") }} __init` + `ial_prompt_`,
		`{{ messages[loop.index0 - 1]['content'] }}{{ tool.function.name }}{{ messages[-1] }}`,
	}
	for _, tpl := range benign {
		if got := content.CheckTemplate(tpl); got != "" {
			t.Errorf("benign template refused: %s\n%s", got, tpl)
		}
	}
	// Each attack, and the construct its reason must name.
	attacks := map[string]string{
		`{{ cycler.__init__.__globals__.os.popen('id').read() }}`:             `attribute "__init__"`,
		`{{ ''.__class__.__mro__[1].__subclasses__() }}`:                      `attribute "__class__"`,
		`{{ lipsum|attr("__glo" ~ "bals__") }}`:                               `"attr" filter name computed by string operations`,
		`{{ self._TemplateReference__context.joiner.__init__ }}`:              `attribute "_TemplateReference__context"`,
		`{{ request.application.__self__._get_data_for_json.__reduce_ex__ }}`: `attribute "__self__"`,
		`{{ x["\x5f\x5fclass\x5f\x5f"] }}`:                                    `item name "__class__"`,
		`{{ foo.__weakref__ }}`:                                               `attribute "__weakref__"`,
		`{{ x['_' * 2 ~ 'class' ~ '_' * 2] }}`:                                `computed by string operations`,
		`{% include 'other.jinja' %}`:                                         `include`,
		`{{ .System }} {{ .Prompt }}`:                                         `does not parse as a Jinja template`,
	}
	for tpl, want := range attacks {
		if got := content.CheckTemplate(tpl); !strings.Contains(got, want) {
			t.Errorf("CheckTemplate(%q) = %q, want it to name %q", tpl, got, want)
		}
	}
}
