module github.com/portvol/portvol

go 1.26
