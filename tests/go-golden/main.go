// Command go-golden renders text/template cases with Go's own engine, as ESO does
// (missingkey=error, the data decoded from JSON), and prints the results as JSON: the golden
// file that pins secret-bridge's template engine to Go's. Standard library only, no module.
//
// Regenerate from the repository root with:
//
//	GO111MODULE=off go run tests/go-golden/main.go > src/template/golden/go.json
//
// Cases stay within what ESO's engine shares with plain text/template: no sprig function,
// and none that sprig replaces (`slice` on strings). Errors are recorded as "error": true,
// since the messages are not part of the comparison.
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"text/template"
)

type testCase struct {
	name, template, data string
}

type result struct {
	Name     string          `json:"name"`
	Template string          `json:"template"`
	Data     json.RawMessage `json:"data"`
	Output   *string         `json:"output,omitempty"`
	Error    bool            `json:"error,omitempty"`
}

const values = `{"s":"hello","n":3,"f":1.5,"big":1e21,"small":1e-7,"neg":-2.25,"t":true,"z":null,
"l":["a","b","c"],"nums":[1,2,3],"m":{"b":1,"a":"x","c":[1,"y"]},"e":"","el":[],"em":{},
"u":"héllo wörld","html":"<a href='x'>&\"</a>","nested":{"a":{"b":{"c":"deep"}}}}`

var cases = []testCase{
	// Text, fields and printing.
	{"plain text", `hello`, `{}`},
	{"field", `{{.s}}`, values},
	{"nested fields", `{{.nested.a.b.c}}`, values},
	{"missing key", `{{.nope}}`, values},
	{"field of a string", `{{.s.x}}`, values},
	{"numbers", `{{.n}} {{.f}} {{.big}} {{.small}} {{.neg}}`, values},
	{"bool and null", `{{.t}} {{.z}}`, values},
	{"list and map", `{{.l}} {{.nums}} {{.m}} {{.el}} {{.em}}`, values},
	{"literals", `{{1}} {{1.5}} {{"s"}} {{'a'}} {{0x1F}} {{1e3}} {{true}} {{-3}} {{0o17}} {{1_000}}`, `{}`},
	{"raw string", "{{`a\\nb`}}", `{}`},
	{"escapes", `{{"a\tb\u00e9\x41"}}`, `{}`},
	{"dot", `{{.}}`, `"just a string"`},
	{"nil command", `{{nil}}`, `{}`},
	// Trim markers and comments.
	{"trim", "a  {{- .s -}}  b", values},
	{"trim newlines", "a\n\n{{- .s }}\n\n{{- .s -}}\n\nb", values},
	{"comment", "a{{/* c */}}b{{- /* c */ -}} c", `{}`},
	{"no trim without space", "{{3 -}} x", `{}`},
	// Variables.
	{"declare and assign", `{{$x := 1}}{{$x}}{{$x = 2}}{{$x}}`, `{}`},
	{"dollar", `{{with .m}}{{$.s}}{{end}}`, values},
	{"variable fields", `{{$m := .m}}{{$m.a}}`, values},
	{"variable scope", `{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}`, `{}`},
	{"assign in if", `{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}`, `{}`},
	// Control structures.
	{"if else", `{{if .t}}yes{{else}}no{{end}}{{if .e}}yes{{else}}no{{end}}`, values},
	{"else if", `{{if .e}}a{{else if .z}}b{{else if .n}}c{{else}}d{{end}}`, values},
	{"if truthiness", `{{if .el}}1{{end}}{{if .em}}2{{end}}{{if .z}}3{{end}}{{if 0}}4{{end}}{{if 0.0}}5{{end}}{{if .l}}6{{end}}`, values},
	{"with", `{{with .s}}{{.}}{{end}}{{with .e}}x{{else}}empty{{end}}`, values},
	{"range list", `{{range .l}}[{{.}}]{{end}}`, values},
	{"range index", `{{range $i, $v := .l}}{{$i}}={{$v}} {{end}}`, values},
	{"range map", `{{range $k, $v := .m}}{{$k}}:{{$v}};{{end}}`, values},
	{"range else", `{{range .el}}x{{else}}none{{end}}`, values},
	{"range break continue", `{{range .nums}}{{if eq . 2.0}}{{continue}}{{end}}{{if eq . 3.0}}{{break}}{{end}}{{.}}{{end}}`, values},
	{"range one variable", `{{range $v := .l}}{{$v}}{{end}}`, values},
	{"range over a string", `{{range .s}}{{end}}`, values},
	{"define and template", `{{define "t"}}[{{.}}]{{end}}{{template "t" .s}}{{template "t"}}`, values},
	{"block", `{{block "b" .s}}<{{.}}>{{end}}`, values},
	{"undefined template", `{{template "none"}}`, `{}`},
	// Pipelines.
	{"pipeline", `{{.s | printf "%s!"}}`, values},
	{"parentheses", `{{(printf "%d" 3) | len}} {{len (print .s)}}`, values},
	{"chained field on parens", `{{(.nested).a.b.c}}`, values},
	{"pipeline into field", `{{.s | .x}}`, values},
	// Builtins.
	{"and or", `{{and 1 0}} {{and 1 2}} {{or 0 "" "x"}} {{or 0 ""}} {{and .t .s}}`, values},
	{"and or short circuit", `{{or 1 .nope}} {{and 0 .nope}}`, values},
	{"not", `{{not 0}} {{not .s}} {{not .el}}`, values},
	{"eq", `{{eq 1 1}} {{eq "a" "b" "a"}} {{eq .n 3.0}} {{eq .t true}} {{eq .z nil}}`, values},
	{"eq mixed kinds", `{{eq 1 1.0}}`, `{}`},
	{"eq lists", `{{eq .l .l}}`, values},
	{"ne lt le gt ge", `{{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1.5 2.5}} {{lt -1 1}}`, `{}`},
	{"lt bools", `{{lt true false}}`, `{}`},
	{"len", `{{len .s}} {{len .l}} {{len .m}} {{len .u}} {{len .el}}`, values},
	{"len of a number", `{{len 3}}`, `{}`},
	{"index", `{{index .l 1}} {{index .m "a"}} {{index .m "c" 1}} {{index .s 0}}`, values},
	{"index missing map key", `{{index .m "nope"}}`, values},
	{"index out of range", `{{index .l 5}}`, values},
	{"slice lists", `{{slice .l 1 2}} {{slice .l 1}} {{slice .l}}`, values},
	{"print", `{{print 1 2 "a" "b" 3 .z}}`, values},
	{"println", `{{println 1 "a" .l}}`, values},
	{"printf basics", `{{printf "%s %d %v %q" "x" 42 .l "y"}}`, values},
	{"html", `{{html .html}} {{html 1 "<" 2}}`, values},
	{"js", `{{js .html}} {{js "a\\b\n\t=é"}}`, values},
	{"urlquery", `{{urlquery "a b&c=d/é?"}} {{urlquery 1 "x"}}`, `{}`},
	{"wrong number of args", `{{len}}`, `{}`},
	{"not a function", `{{.s 1}}`, values},
	// fmt verbs.
	{"verb v", `{{printf "%v|%v|%v|%v|%v|%v" 1 1.5 "s" true .l .m}}`, values},
	{"verb plus v", `{{printf "%+v|%+v|%+d" 1 .f 5}}`, values},
	{"verb sharp v", `{{printf "%#v|%#v|%#v|%#v|%#v|%#v" 42 "s" .l .m .f .n}}`, values},
	{"verb sharp v nil and bool", `{{printf "%#v|%#v|%#v" .z true .em}}`, values},
	{"verb T", `{{printf "%T|%T|%T|%T|%T|%T|%T" 42 .f "s" .l .m .z .t}}`, values},
	{"integers", `{{printf "%d|%5d|%-5d|%05d|%+d|% d|%x|%X|%o|%b|%c" 42 42 42 42 42 42 255 255 8 5 65}}`, `{}`},
	{"negative integers", `{{printf "%d|%x|%05d|%o" -42 -255 -42 -8}}`, `{}`},
	{"sharp integers", `{{printf "%#x|%#X|%#o|%#b" 255 255 8 5}}`, `{}`},
	{"unicode", `{{printf "%U|%#U|%c|%q" 0x1F600 0x41 0xE9 0x263A}}`, `{}`},
	{"strings", `{{printf "%s|%10s|%-10s|%.3s|%q|%x|%X|% x|%#x" "hello" "hi" "hi" "hello" "a\"b" "hi" "hi" "hi" "hi"}}`, `{}`},
	{"quoting", `{{printf "%q|%+q|%#q|%q" "héllo\n" "héllo" "back" "a` + "`" + `b"}}`, `{}`},
	{"floats", `{{printf "%f|%.2f|%6.2f|%-8.3f|%e|%E|%.3e|%g|%G|%g" 3.14159 3.14159 3.14159 3.14159 1234.5678 1234.5678 1234.5678 0.000012 1e21 100000.0}}`, `{}`},
	{"float data", `{{printf "%f|%g|%v|%.1f|%e" .f .big .small .neg .n}}`, values},
	{"precision v", `{{printf "%.2v|%.3v|%.1v" 3.14159 "abcdef" 1e6}}`, `{}`},
	{"bool verbs", `{{printf "%t|%v|%5t" true false true}}`, `{}`},
	{"percent", `{{printf "100%%"}}`, `{}`},
	{"bad verb", `{{printf "%d|%s|%z" "s" 1 2}}`, `{}`},
	{"float with d", `{{printf "%d" .n}}`, values},
	{"missing and extra", `{{printf "%s %s" "a"}}|{{printf "%s" "a" "b" 3}}`, `{}`},
	{"star width", `{{printf "%*d|%-*d|%.*f" 5 42 4 7 2 3.14159}}`, `{}`},
	{"nil verbs", `{{printf "%v|%s|%d" .z .z .z}}`, values},
	{"unicode width", `{{printf "%6s|%-6s|" "é" "日本"}}`, `{}`},
	{"list verbs", `{{printf "%s|%v" .l .nums}}`, values},
}

func main() {
	results := make([]result, 0, len(cases))
	for _, c := range cases {
		r := result{Name: c.name, Template: c.template, Data: json.RawMessage(compact(c.data))}
		var data interface{}
		if err := json.Unmarshal([]byte(c.data), &data); err != nil {
			panic(c.name + ": " + err.Error())
		}
		t, err := template.New(c.name).Option("missingkey=error").Parse(c.template)
		var out bytes.Buffer
		if err == nil {
			err = t.Execute(&out, data)
		}
		if err != nil {
			r.Error = true
		} else {
			s := out.String()
			r.Output = &s
		}
		results = append(results, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		panic(err)
	}
}

func compact(s string) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		panic(err)
	}
	return b.Bytes()
}
